"""The Train tab end to end through gradio_client: add two classes, train, try, download, activate.

A minimal gr.Blocks around build_train_tab (not the app file), tiny random-init base weights.
"""

import re
import socket
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from conftest import make_image
from gradio_client import Client, handle_file

from artlab.lab import Lab
from artlab.store.registry import Registry
from artlab.ui.context import AppContext
from artlab.ui.train_tab import build_train_tab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_weights, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    with gr.Blocks() as demo:
        with gr.Tab("Train"):
            build_train_tab(AppContext(Lab(weights=str(tiny_weights), models_dir=str(models), device="cpu")),
                            gr.State(None))
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url, models
    finally:
        demo.close()


@pytest.fixture()
def client(server):
    """A new visitor (session) per test, and the models directory."""
    url, models = server
    return Client(url, verbose=False), models


def _images(folder: Path, color, pattern: int, count: int = 6) -> list[Path]:
    return [make_image(folder / f"{k}.png", color, pattern=pattern + k % 2) for k in range(count)]


def test_upload_two_classes_train_and_predict(client, tmp_path, monkeypatch):
    client, models = client
    red = _images(tmp_path / "red", (200, 30, 30), 0)
    blue = _images(tmp_path / "blue", (30, 30, 200), 3)

    for name, files in (("red", red), ("blue", blue)):
        client.predict(name, api_name="/train_add_class")
        table, notes, _ = client.predict([handle_file(str(p)) for p in files], name, api_name="/train_add_images")
    assert {row[0]: row[1] for row in table["data"]} == {"red": 6, "blue": 6}
    assert "Ready to train" in notes

    status, plot, per_class, confusion, wrong, download = client.predict(
        2, 0.01, 8, "head", api_name="/train_start")
    assert "Held-out accuracy" in status, status
    assert {row[0] for row in per_class["data"]} == {"red", "blue"}
    assert len(confusion["data"]) == 2
    # The live plot (SVG): a line per metric, whole epochs on its axis, the legend under it.
    assert plot.count("<polyline") == 3 and re.findall(r'class="x"[^>]*>([^<]*)<', plot) == ["1", "2"]
    assert all(name in plot for name in ("training loss", "held-out loss", "held-out accuracy"))

    label, note = client.predict(handle_file(str(red[0])), api_name="/train_try")
    assert {c["label"] for c in label["confidences"]} == {"red", "blue"}

    # The one download button holds the model's zip once it is trained (onnx is installed here).
    assert download["visible"]
    with zipfile.ZipFile(download["value"]) as archive:
        assert sorted(archive.namelist()) == ["art_classifier.json", "art_classifier.safetensors", "model.onnx"]
    assert "model.onnx" in status

    assert "for you only" in client.predict(api_name="/train_activate")
    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "s3cret")
    assert "Only a curator" in client.predict("wrong", "colours", api_name="/train_publish")
    assert Registry(models).active() is None
    assert "colours/v1" in client.predict("s3cret", "colours", api_name="/train_publish")
    assert Registry(models).active() == "colours/v1"


def test_bad_uploads_get_a_message_not_an_error(client, tmp_path):
    client, _ = client
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("cats/../../escape.png", b"x")
    table, notes, _ = client.predict(handle_file(str(evil)), api_name="/train_add_zip")
    assert "zip-slip" in notes
    only = tmp_path / "one.zip"
    with zipfile.ZipFile(only, "w") as z:
        z.write(make_image(tmp_path / "a.png"), "cats/a.png")
        z.writestr("cats/notes.txt", "hello")
    table, notes, _ = client.predict(handle_file(str(only)), api_name="/train_add_zip")
    assert "notes.txt" in notes and "at least 2 classes" in notes
    status, *_ = client.predict(2, 0.01, 8, "head", api_name="/train_start")
    assert status.startswith("❌")


def test_a_deeper_model_is_handed_to_the_artwork_tab_too(client, tmp_path):
    """It has no style/subject heads; the Artwork tab shows its classes alone (test_app_finetuned.py)."""
    client, _ = client
    for name, color, pattern in (("red", (200, 30, 30), 0), ("blue", (30, 30, 200), 3)):
        client.predict(name, api_name="/train_add_class")
        files = _images(tmp_path / name, color, pattern)
        client.predict([handle_file(str(p)) for p in files], name, api_name="/train_add_images")
    status, *_ = client.predict(1, 0.01, 8, "1", api_name="/train_start")
    assert "Held-out accuracy" in status, status
    assert "for you only" in client.predict(api_name="/train_activate")


def test_without_onnx_the_download_is_the_model_and_says_how_to_export(tmp_path, monkeypatch):
    """The README's install has no onnx package: the zip then holds the model and its card, no error."""
    import artlab.curation as curation
    from artlab.ui.train_handlers import _zip

    folder = tmp_path / "run1"
    folder.mkdir()
    (folder / "art_classifier.safetensors").write_bytes(b"weights")
    (folder / "art_classifier.json").write_text("{}")
    monkeypatch.setattr(curation, "onnx_available", lambda: False)
    path, sentence = _zip(str(folder), "en")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["art_classifier.json", "art_classifier.safetensors"]
    assert "pip install onnx" in sentence and "failed" not in sentence
    assert "onnx" in _zip(str(folder), "zh")[1]


def test_start_over_takes_the_artwork_tab_back_to_the_usual_model(tmp_path, tiny_weights):
    """Train, "for me", "Start over", then the Artwork tab: the usual model answers, with a message."""
    from conftest import make_image

    from artlab.curation import CurationSession
    from artlab.ui.artwork_tab import analyze
    from artlab.ui.train_handlers import start_over

    lab = Lab(weights=str(tiny_weights), models_dir=str(tmp_path / "models"), device="cpu")
    session = CurationSession()
    own = session.folder / "models" / "run1"
    own.mkdir(parents=True)
    for path in tiny_weights.glob("art_classifier.*"):
        (own / path.name).write_bytes(path.read_bytes())
    assert lab.artwork_weights(str(own)) == str(own)
    cleared = start_over(session, str(own), "en", lab=lab)
    notes, results, reset = cleared[2], cleared[4:9], cleared[-1]
    assert reset is None and not own.exists() and "usual model again" in notes  # back to the usual model
    assert results == ("", "", None, None, [])                                  # no results of the last run
    assert start_over(None, None, "en")[-1] == {"__type__": "update"}           # nothing of theirs in use
    picture = make_image(tmp_path / "p.png", size=(80, 60), pattern=2)
    out = analyze(AppContext(lab), str(picture), "en", str(own), None, progress=lambda *a, **k: None)
    style, message, shown, weights = out[0], out[9], out[10], out[12]
    assert style["visible"] and style["value"] and weights is None             # answered, and reset
    assert "usual model answered" in message["value"] and shown["heads"]
    # A model that is gone for another reason (the session ended) falls back the same way.
    assert lab.artwork_weights(str(own)) == lab.artwork_weights(None)
