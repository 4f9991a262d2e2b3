"""The app with fine-tuned models: the models directory's active model is the Artwork tab's default,
its own classes are shown (style/subject hidden when it has none), a visitor's model overrides it,
and the gallery's similar works always use the app's model's embeddings.

Tiny random-init base weights (the tiny_weights fixture) and two tiny fine-tuned models made here:
one on its head only, one a block deeper (no style/subject heads, changed embeddings).
"""

import socket
from pathlib import Path

import pytest
import torch
from conftest import make_image
from gradio_client import Client, handle_file

from artlab.store.registry import Registry
from artlab.training.finetune import FinetuneConfig, finetune


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def models_dir(tiny_weights, tmp_path_factory) -> Path:
    """A models directory with colours/v1 (head only) and deep/v1 (one block deeper)."""
    data = tmp_path_factory.mktemp("classes")
    for name, color, pattern in (("red", (200, 30, 30), 0), ("blue", (30, 30, 200), 3)):
        for k in range(6):
            make_image(data / name / f"{k}.png", color, pattern=pattern + k % 2)
    registry = Registry(tmp_path_factory.mktemp("models"))
    for name, depth in (("colours", "head"), ("deep", "1")):
        config = FinetuneConfig(epochs=3, deep_epochs=1, batch_size=8, depth=depth, device="cpu")
        finetune(data, registry.next_path(name), base=tiny_weights, config=config)
    return registry.root


@pytest.fixture(scope="module")
def app(tiny_weights, models_dir, tmp_path_factory):
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import serve

    Registry(models_dir).activate("deep")             # as `python -m artlab models activate deep` would
    ctx = AppContext(Lab(weights=str(tiny_weights), models_dir=str(models_dir), device="cpu", gallery_dir=str(tmp_path_factory.mktemp("gallery"))))
    demo = serve(ctx, "127.0.0.1", free_port(), block=False)
    yield ctx, Client(demo.local_url, verbose=False)
    demo.close()


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    return make_image(tmp_path_factory.mktemp("pics") / "harbour.png", (30, 90, 160), size=(96, 64), pattern=2)


def _shown(label) -> set[str]:
    """The classes a gr.Label shows (it comes as an update: visibility and value); empty when hidden."""
    if label.get("__type__") == "update":
        label = label["value"] if label.get("visible", True) else None
    return {c["label"] for c in (label or {}).get("confidences", [])}


def _analyze(client, picture):
    from test_app import ARTWORK_OUTPUTS

    return dict(zip(ARTWORK_OUTPUTS, client.predict(handle_file(str(picture)), api_name="/analyze_artwork"),
                    strict=True))


def test_the_active_deep_model_shows_only_its_own_classes(app, picture):
    ctx, client = app
    out = _analyze(client, picture)
    assert _shown(out["custom"]) == {"red", "blue"}
    assert _shown(out["style"]) == set() and _shown(out["subject"]) == set()   # hidden, not a crash
    assert out["heatmap"] and "dB" in out["psnr"]        # Grad-CAM of its own head; the app's autoencoder
    assert out["custom"]["label"] == "deep/v1"           # titled with its key in the models directory
    assert not out["style"]["visible"] and not out["subject"]["visible"]


def test_the_gallery_is_searched_with_the_apps_embedding(app, picture, monkeypatch):
    ctx, client = app
    deep = ctx.lab.artwork_weights()
    assert not ctx.lab.embeds_like_gallery(deep)
    gallery = ctx.lab.gallery()
    seen = []
    original = gallery.similar
    monkeypatch.setattr(gallery, "similar", lambda embedding, *a, **k: seen.append(embedding) or original(
        embedding, *a, **k))
    _analyze(Client(client.src, verbose=False), picture)   # a new visitor: this one has seen it analysed
    ours, theirs = (ctx.lab.models(w).analyze([ctx.lab.models(w).prepare(picture)], reconstruct=False)[0].embedding
                    for w in (None, deep))
    used = torch.as_tensor(seen[-1])
    assert torch.allclose(used, ours, atol=1e-5)
    assert not torch.allclose(used, theirs, atol=1e-3)   # the deep model's own embedding differs


def test_activating_another_model_takes_effect_without_a_restart(app, picture, models_dir):
    ctx, client = app
    registry = Registry(models_dir)
    registry.activate("colours")
    try:
        out = _analyze(client, picture)
        assert _shown(out["custom"]) == {"red", "blue"}
        assert len(_shown(out["style"])) == 3 and len(_shown(out["subject"])) == 3   # head only: both kept
        assert ctx.lab.embeds_like_gallery(ctx.lab.artwork_weights())                      # same backbone and neck
        registry.deactivate()                                                      # `models shipped`
        out = _analyze(client, picture)
        assert _shown(out["custom"]) == set() and len(_shown(out["style"])) == 3
    finally:
        registry.activate("deep")


def test_a_visitors_own_model_overrides_the_active_one(app, picture, models_dir):
    from artlab.ui.artwork_tab import analyze

    ctx, _ = app
    own = str(Registry(models_dir).path("colours/v1"))
    style, subject, custom, *_ = analyze(ctx, str(picture), "zh", own, None, progress=lambda *a, **k: None)
    assert style["visible"] and subject["visible"] and set(custom["value"]) == {"red", "blue"}
    assert custom["label"] == "colours/v1"
    assert ctx.lab.artwork_weights(None).endswith("deep/v1") and ctx.lab.artwork_weights(own) == own


def test_added_works_use_the_apps_model_whatever_is_active(app, picture):
    ctx, client = app
    assert "Added" in client.predict(handle_file(str(picture)), "Harbour", "", "", api_name="/add_to_gallery")
    work = ctx.lab.gallery().browse(query="Harbour")[0]
    assert work.style and work.subject                   # the deep model has neither: the app's model labelled it


def test_models_directory_from_the_command_line_and_the_environment(models_dir, monkeypatch):
    from artlab.lab import Lab
    from artlab.ui.server import make_context, parse_args

    assert make_context(parse_args(["--models", str(models_dir)])).lab.models_dir == str(models_dir)
    monkeypatch.setenv("ARTLAB_MODELS", str(models_dir))
    assert Lab(weights="w").artwork_weights() == str(Registry(models_dir).active_path())
    monkeypatch.setenv("ARTLAB_MODELS", str(models_dir / "nothing-here"))
    assert Lab(weights="w").artwork_weights() == "w"


def test_a_broken_active_model_stops_the_start_with_one_line(tiny_weights, tmp_path, capsys):
    from artlab.ui.server import main

    registry = Registry(tmp_path / "models")
    folder = registry.next_path("broken")
    folder.mkdir(parents=True)
    (folder / "art_classifier.safetensors").write_bytes(b"not a safetensors file")
    (folder / "art_classifier.json").write_text('{"labels": {"labels": ["a", "b"]}, "input_size": 64}')
    registry.activate("broken")
    with pytest.raises(SystemExit) as exit_info:
        main(["--weights", str(tiny_weights), "--models", str(registry.root)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "active model" in err and "rollback" in err and len(err.splitlines()) == 1


def test_a_head_only_model_of_an_earlier_base_does_not_share_the_gallerys_embeddings(app, models_dir, tmp_path):
    """After new shipped weights, a curator's model fine-tuned (head only) on the old ones keeps
    the old backbone: its embeddings must not be compared with the gallery's."""
    import shutil

    from safetensors.torch import save_file

    from artlab.checkpoints import read_tensors

    ctx, _ = app
    head_only = Registry(models_dir).path("colours/v1")
    older = tmp_path / "older"
    shutil.copytree(head_only, older)
    tensors = read_tensors(older / "art_classifier")
    tensors["backbone.stem.0.weight"] = tensors["backbone.stem.0.weight"] * 1.1   # another backbone, same neck
    save_file(tensors, str(older / "art_classifier.safetensors"))
    assert ctx.lab.embeds_like_gallery(str(head_only))
    assert not ctx.lab.embeds_like_gallery(str(older))
