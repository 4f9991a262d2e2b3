"""The web app end to end: started in-process on a free port, driven by gradio_client and plain HTTP.

Tiny random-init image models (the tiny_weights fixture) and tiny text models trained here
in a second or two; nothing from ../shared.
"""

import csv
import shutil
import socket
from pathlib import Path

import httpx
import pytest
from conftest import make_image
from gradio_client import Client, handle_file
from PIL import Image

from artlab.labels import DISPLAY_NAMES, STYLES, SUBJECTS

ROOT = Path(__file__).resolve().parents[1]
STYLE_NAMES = {DISPLAY_NAMES["en"][s] for s in STYLES}
SUBJECT_NAMES = {DISPLAY_NAMES["en"][s] for s in SUBJECTS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_text_data(root: Path) -> Path:
    folder = root / "text"
    folder.mkdir(parents=True)
    words = {"landscape": "river mountain", "portrait": "portrait woman", "still_life": "apples vase",
             "genre_scene": "market dance", "history_religious": "madonna saint"}
    genres = {"landscape": "landscape", "portrait": "portrait", "still_life": "still_life",
              "genre_scene": "genre_painting", "history_religious": "religious_painting"}
    with open(folder / "wikiart_titles.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["title", "artist", "year", "style", "genre"])
        for i in range(80):
            subject = list(words)[i % 5]
            writer.writerow([f"{words[subject]} {STYLES[i % 7]} {i}", "someone", 1900, STYLES[i % 7], genres[subject]])
    return root


@pytest.fixture(scope="module")
def weights(tiny_weights, tmp_path_factory) -> Path:
    """The tiny image checkpoints plus tiny text checkpoints, in one folder."""
    folder = tmp_path_factory.mktemp("appweights")
    for path in tiny_weights.iterdir():
        shutil.copy(path, folder / path.name)
    try:
        from artlab.training.text import train_autoencoder, train_classifier
    except ImportError:
        return folder                                   # the app then says the text side is missing
    data = _tiny_text_data(tmp_path_factory.mktemp("textdata"))
    small = dict(epochs=1, batch_size=16, embed_dim=8, hidden=8, device="cpu", show_progress=False)
    train_classifier(data, folder, **small)
    train_autoencoder(data, folder, code_dim=8, decoder_hidden=8, **small)
    return folder


@pytest.fixture(scope="module")
def app(weights, tmp_path_factory):
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import serve

    ctx = AppContext(Lab(weights=str(weights), gallery_dir=str(tmp_path_factory.mktemp("gallery")), device="cpu", models_dir=str(tmp_path_factory.mktemp("no-models"))), max_upload_mb=1)  # not the user's
    port = free_port()
    demo = serve(ctx, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    yield ctx, url, Client(url, verbose=False)
    demo.close()


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    return make_image(tmp_path_factory.mktemp("pics") / "harbour.png", (30, 90, 160), size=(96, 64), pattern=2)


def test_analyze_artwork_returns_labels_reconstruction_and_heatmap(app, picture):
    _, _, client = app
    style, subject, heatmap, seen, recon, psnr, similar, custom = client.predict(handle_file(str(picture)),
                                                                                  api_name="/analyze_artwork")
    # The labels come as updates (a fine-tuned model may hide style/subject, see test_app_finetuned.py).
    assert style["visible"] and subject["visible"] and not custom["visible"]      # no fine-tuned model here
    style, subject = style["value"], subject["value"]
    assert len(style["confidences"]) == 3 and {c["label"] for c in style["confidences"]} <= STYLE_NAMES
    assert style["label"] == style["confidences"][0]["label"]
    assert len(subject["confidences"]) == 3 and {c["label"] for c in subject["confidences"]} <= SUBJECT_NAMES
    assert "dB" in psnr
    assert Image.open(recon).size == Image.open(seen).size == (128, 128)
    assert Image.open(heatmap).size == (96, 64)
    assert similar == []                                # the gallery starts empty


def test_analyze_text_returns_labels(app):
    ctx, _, client = app
    subject, style, reconstruction, matches, note = client.predict("river mountain at dusk",
                                                                   api_name="/analyze_text")
    models, problem = ctx.lab.text_models()
    if models is None:
        pytest.fail(f"text models did not load: {problem}")
    assert {c["label"] for c in subject["confidences"]} <= SUBJECT_NAMES and subject["confidences"]
    assert {c["label"] for c in style["confidences"]} <= STYLE_NAMES and style["confidences"]
    assert isinstance(reconstruction, str)


def test_bad_inputs_get_a_clear_message(app, tmp_path):
    _, _, client = app
    with pytest.raises(Exception, match="empty text"):
        client.predict("   ", api_name="/analyze_text")
    with pytest.raises(Exception, match="upload, paste or photograph"):
        client.predict(None, api_name="/analyze_artwork")


def test_added_work_appears_in_browse_and_in_similar_results(app, picture, tmp_path):
    ctx, _, client = app
    message = client.predict(handle_file(str(picture)), "Harbour at Dawn", "Test Painter", "1880",
                             api_name="/add_to_gallery")
    assert "Added" in message
    again = client.predict(handle_file(str(picture)), "", "", "", api_name="/add_to_gallery")
    assert "already" in again
    grid, note = client.predict("", "", "harbour", api_name="/gallery_search")
    assert [item["caption"].split(" · ")[0] for item in grid] == ["Harbour at Dawn"]
    assert "1 of 1" in note
    # A retouched copy of the picture finds the stored work among its similar works.
    near = Image.open(picture).convert("RGB")
    near.paste((255, 255, 255), (5, 5, 8, 8))
    near_path = tmp_path / "near.png"
    near.save(near_path)
    similar = client.predict(handle_file(str(near_path)), api_name="/analyze_artwork")[6]
    assert similar and similar[0]["caption"].startswith("Harbour at Dawn")
    assert ctx.lab.gallery().count() == 1


def test_only_gallery_images_and_assets_are_served(app, weights):
    ctx, url, _ = app
    gallery = ctx.lab.gallery()
    thumb = gallery.browse()[0].thumb if gallery.count() else None
    refused = ["/etc/passwd", str(ROOT / "app.py"), str(ROOT / "artlab" / "gallery.py"),
               str(weights / "art_classifier.safetensors"), str(gallery.db_path), str(Path.home() / ".bashrc"),
               str(Path(gallery.thumbs) / ".." / "gallery.sqlite")]
    with httpx.Client(timeout=10) as http:
        for path in refused:
            status = http.get(f"{url}gradio_api/file={path}").status_code
            assert status in (403, 404), f"{path} served with {status}"
        assert http.get(f"{url}gradio_api/file={ROOT / 'assets' / 'artlab.css'}").status_code == 200
        if thumb:
            assert http.get(f"{url}gradio_api/file={thumb}").status_code == 200


def test_oversized_upload_is_refused(app, tmp_path):
    _, url, _ = app
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024))        # 2 MB against a 1 MB limit
    small = make_image(tmp_path / "small.png")
    with httpx.Client(timeout=30) as http:
        with open(big, "rb") as f:
            response = http.post(f"{url}gradio_api/upload", files={"files": ("big.png", f, "image/png")})
        assert response.status_code in (400, 413), response.text
        assert "size" in response.text.lower()
        with open(small, "rb") as f:
            assert http.post(f"{url}gradio_api/upload",
                             files={"files": ("small.png", f, "image/png")}).status_code == 200


def test_kiosk_has_no_train_tab_no_api_footer_and_no_adding(tmp_path, tiny_weights):
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.layout import build_app
    from artlab.ui.server import launch_options

    ctx = AppContext(Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path / "g")), kiosk=True, idle_minutes=2)
    config = build_app(ctx).get_config_file()
    labels = [c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"]
    assert "Train" not in labels and "Artwork" in labels
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert "add_to_gallery" not in api_names and "analyze_artwork" in api_names
    options = launch_options(ctx, "127.0.0.1", 7860)
    assert options["footer_links"] == [] and options["max_file_size"] == "20mb"
    assert "120000" in options["head"]                      # the idle reset after 2 minutes
    assert all(not Path(p).is_relative_to(ROOT / "artlab") for p in options["allowed_paths"])


def test_curator_password_from_the_environment(monkeypatch):
    from artlab.curator import curator_ok

    monkeypatch.delenv("ARTLAB_CURATOR_PASSWORD", raising=False)
    assert not curator_ok("anything") and not curator_ok("")
    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "s3cret-ü")
    assert curator_ok("s3cret-ü")
    assert not curator_ok("s3cret") and not curator_ok(None) and not curator_ok("s3cret-ü ")
