"""The Train tab end to end through gradio_client: add two classes, train, try, download, activate.

A minimal gr.Blocks around build_train_tab (not the app file), tiny random-init base weights.
"""

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

    status, plot, per_class, confusion, wrong, model_file = client.predict(
        2, 0.01, 8, "head", api_name="/train_start")
    assert "Held-out accuracy" in status, status
    assert {row[0] for row in per_class["data"]} == {"red", "blue"}
    assert len(confusion["data"]) == 2
    points = {(row[0], row[2]) for row in plot["data"]}             # one point per epoch and metric
    assert points == {(e, m) for e in (1, 2) for m in ("training loss", "held-out loss", "held-out accuracy")}

    label, note = client.predict(handle_file(str(red[0])), api_name="/train_try")
    assert {c["label"] for c in label["confidences"]} == {"red", "blue"}

    path, note = client.predict(api_name="/train_download")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["art_classifier.json", "art_classifier.safetensors", "model.onnx"]

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
