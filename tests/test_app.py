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


ARTWORK_OUTPUTS = ("style", "subject", "custom", "heatmap", "legend", "reconstruction", "psnr", "similar",
                   "message", "image")


def analyze(client, path) -> dict:
    """/analyze_artwork (the page's own endpoint) by output name."""
    return dict(zip(ARTWORK_OUTPUTS, client.predict(handle_file(str(path)) if path else None,
                                                    api_name="/analyze_artwork"), strict=True))


def test_analyze_artwork_returns_labels_reconstruction_and_heatmap(app, picture):
    _, _, client = app
    out = analyze(client, picture)
    # The labels come as updates (a fine-tuned model may hide style/subject, see test_app_finetuned.py).
    assert out["style"]["visible"] and out["subject"]["visible"] and not out["custom"]["visible"]  # no own model
    style, subject = out["style"]["value"], out["subject"]["value"]
    assert len(style["confidences"]) == 3 and {c["label"] for c in style["confidences"]} <= STYLE_NAMES
    assert style["label"] == style["confidences"][0]["label"]
    assert len(subject["confidences"]) == 3 and {c["label"] for c in subject["confidences"]} <= SUBJECT_NAMES
    assert "dB" in out["psnr"] and "attention" in out["legend"] and not out["message"]["visible"]
    seen, recon = out["reconstruction"]                 # a slider: the autoencoder's input and its output
    assert Image.open(recon).size == Image.open(seen).size == (128, 128)
    original, heatmap = out["heatmap"]                  # a slider: the picture and where the model looked
    assert Image.open(heatmap).size == Image.open(original).size == (96, 64)
    assert out["similar"] == []                         # the gallery starts empty


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
    subject, style, reconstruction, matches, note = client.predict("   ", api_name="/analyze_text")
    assert "Type a title" in note["value"] and not subject and not matches
    assert "photograph an artwork first" in analyze(client, None)["message"]["value"]


def test_every_bad_file_gets_one_plain_message_and_odd_ones_are_read(app, tmp_path):
    """The CLI's bad and odd files (tests/bad_images.py) through the page's endpoint: a sentence for
    each bad one, no server path, no framework text, the outputs emptied; the odd ones analysed."""
    from bad_images import make_bad_files, make_odd_files

    _, _, client = app
    bad = make_bad_files(tmp_path / "bad")
    bad.pop("missing")                                  # a browser cannot upload a file that is not there
    for name, path in bad.items():
        out = analyze(client, path)
        message = out["message"]["value"]
        assert out["message"]["visible"] and message.endswith("."), (name, message)
        assert "/tmp" not in message and "Error" not in message and "preprocess" not in message, message
        assert out["heatmap"] is None and out["similar"] == [] and out["image"] is None, name
    assert "not a picture" in analyze(client, bad["text_as_jpg"])["message"]["value"]
    assert "too many pixels" in analyze(client, bad["bomb"])["message"]["value"]
    assert "empty" in analyze(client, bad["empty"])["message"]["value"]
    for name, path in make_odd_files(tmp_path / "odd").items():   # CMYK, 16-bit, animated, 1x1, ...
        out = analyze(client, path)
        assert out["style"]["value"]["confidences"] and not out["message"]["visible"], name


def test_the_button_does_not_analyse_the_same_picture_twice(app, picture):
    from artlab.ui.artwork_tab import analyze as analyze_in_tab

    ctx, _, _ = app
    first = analyze_in_tab(ctx, str(picture), "en", None, None, progress=lambda *a, **k: None)
    shown = first[10]
    again = analyze_in_tab(ctx, str(picture), "en", None, shown, progress=lambda *a, **k: None)
    assert all(value == {"__type__": "update"} for value in again)          # gr.skip(): nothing changes


def test_added_work_appears_in_browse_and_in_similar_results(app, picture, tmp_path):
    ctx, _, client = app
    message = client.predict(handle_file(str(picture)), "Harbour at Dawn", "Test Painter", "1880",
                             api_name="/add_to_gallery")
    assert "Added" in message
    again = client.predict(handle_file(str(picture)), "", "", "", api_name="/add_to_gallery")
    assert "already" in again
    grid, note, *_ = client.predict("", "", "harbour", api_name="/gallery_search")
    assert [item["caption"].split(" · ")[0] for item in grid] == ["Harbour at Dawn"]
    assert note == "Matching works 1–1."
    # A retouched copy of the picture finds the stored work among its similar works.
    near = Image.open(picture).convert("RGB")
    near.paste((255, 255, 255), (5, 5, 8, 8))
    near_path = tmp_path / "near.png"
    near.save(near_path)
    similar = analyze(client, near_path)["similar"]
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
    labels = [str(c["props"].get("label")) for c in config["components"] if c["type"] == "tabitem"]
    assert not any("tab_train" in label for label in labels) and any("tab_artwork" in label for label in labels)
    # Pictures and galleries offer fullscreen only: nothing to download or share.
    assert {tuple(c["props"]["buttons"]) for c in config["components"]
            if c["type"] in ("image", "imageslider", "gallery")} == {("fullscreen",)}
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert "add_to_gallery" not in api_names and "analyze_artwork" in api_names
    options = launch_options(ctx, "127.0.0.1", 7860)
    assert options["footer_links"] == [] and options["max_file_size"] == "20mb" and options["run_history"] is False
    assert "120000" in options["head"]                      # the idle reset after 2 minutes
    assert all(not Path(p).is_relative_to(ROOT / "artlab") for p in options["allowed_paths"])


def test_curator_password_from_the_environment(monkeypatch):
    from artlab.curator import curator_ok

    monkeypatch.delenv("ARTLAB_CURATOR_PASSWORD", raising=False)
    assert not curator_ok("anything") and not curator_ok("")
    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "s3cret-ü")
    assert curator_ok("s3cret-ü")
    assert not curator_ok("s3cret") and not curator_ok(None) and not curator_ok("s3cret-ü ")


def test_the_camera_faces_the_artwork_and_the_gallery_has_pages(tmp_path, tiny_weights, monkeypatch):
    from artlab.lab import Lab
    from artlab.ui import gallery_tab
    from artlab.ui.context import AppContext
    from artlab.ui.layout import build_app

    ctx = AppContext(Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path / "g"), device="cpu"))
    config = build_app(ctx).get_config_file()
    upload = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "artwork-input")
    assert upload["webcam_options"]["mirror"] is False                      # photographed as it hangs
    assert upload["webcam_options"]["constraints"]["video"]["facingMode"] == {"ideal": "environment"}
    for i in range(3):
        ctx.lab.add(make_image(tmp_path / f"{i}.png", (80 * i, 60, 200), pattern=i).read_bytes(), title=f"W{i}")
    monkeypatch.setattr(gallery_tab, "PAGE", 2)
    items, ids, note, page, previous, following = gallery_tab.browse(ctx, "", "", "", "en", 0)
    assert len(ids) == 2 and note == "Works 1–2 of 3." and not previous.visible and following.visible
    items, ids, note, page, previous, following = gallery_tab.browse(ctx, "", "", "", "zh", 1)
    assert len(ids) == 1 and page == 1 and note == "第 3–3 件，共 3 件作品。" and previous.visible
    assert not following.visible
