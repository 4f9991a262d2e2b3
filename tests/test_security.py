"""Security settings that test_app.py does not already pin down: the kiosk exposes no way to change
the model, the curator password gate, analytics off, the queue groups, pickles never unpickled,
and the minimum versions of gradio and Pillow.

(test_app.py: /gradio_api/file= refusals, the upload cap, the kiosk's tabs and footer.)
"""

import os
import pickle
import re
import shutil
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import ROOT

from artlab.store.registry import Registry

INFERENCE_ENDPOINTS = {"analyze_artwork", "add_to_gallery", "morph", "predict"}
TEXT_ENDPOINTS = {"analyze_text", "predict_text"}   # milliseconds each: their own group (issue 14), not behind paintings
CURATOR_ENDPOINTS = {"train_activate", "train_publish", "train_start", "train_add_zip", "train_add_images"}


@pytest.fixture(scope="module")
def configs(tiny_weights, tmp_path_factory):
    """The app's config (components and events) in kiosk and in normal mode."""
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import create

    out = {}
    for kiosk in (True, False):
        ctx = AppContext(Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path_factory.mktemp("g"))), kiosk=kiosk)
        demo = create(ctx)
        out[kiosk] = (demo, demo.get_config_file())
    return out


def _events(config) -> dict[str, dict]:
    return {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}


def test_kiosk_has_no_endpoint_that_trains_or_changes_the_model(configs):
    _, config = configs[True]
    names = set(_events(config))
    assert not names & CURATOR_ENDPOINTS and not any(n.startswith("train") for n in names)
    assert not any("flag" in n for n in names)                      # no flagging in any form
    assert not any(c["type"] == "uploadbutton" or "flag" in str(c["props"].get("label", "")).lower()
                   for c in config["components"])


def test_publishing_for_everyone_needs_the_curator_password(tiny_weights, tmp_path, monkeypatch):
    """The handler behind /train_publish (not in the kiosk at all): no password set, wrong, right."""
    from artlab.curation import CurationSession
    from artlab.curator import CuratorGate
    from artlab.lab import Lab
    from artlab.ui.train_handlers import make_publish

    models = tmp_path / "models"
    session = CurationSession(tmp_path / "visitor")
    session.model = str(shutil.copytree(tiny_weights, tmp_path / "mine"))
    publish = make_publish(Lab(models_dir=str(models)), CuratorGate())
    monkeypatch.delenv("ARTLAB_CURATOR_PASSWORD", raising=False)
    for attempt in ("", None, "admin", "password"):                # no password configured: always refused
        assert "Only a curator" in publish(attempt, "colours", session)
    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "correct horse")
    for attempt in ("", None, "correct", "correct horse ", "CORRECT HORSE"):
        assert "Only a curator" in publish(attempt, "colours", session)
    assert Registry(models).active() is None and not (models / "colours").exists()
    assert "colours/v1" in publish("correct horse", "colours", session)
    assert Registry(models).active() == "colours/v1"


def test_password_comparison_is_constant_time():
    """curator_ok must use hmac.compare_digest, not ==, so timing does not leak the password."""
    import inspect

    from artlab import curator as context

    source = inspect.getsource(context.curator_ok)
    assert "compare_digest" in source and "==" not in source


def test_analytics_off(configs):
    demo, _ = configs[True]
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert demo.analytics_enabled is False


def test_one_inference_group_and_one_training_group(configs):
    """Every image model call queues in 'inference' (one at a time), text in 'text' (a small pool, so a
    title never waits behind paintings); training in 'training' (one at a time)."""
    demo, config = configs[False]
    events = _events(config)
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert INFERENCE_ENDPOINTS <= set(fns)
    for name in INFERENCE_ENDPOINTS:
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("inference", 1), name
    for name in TEXT_ENDPOINTS:
        assert fns[name].concurrency_id == "text" and 1 <= fns[name].concurrency_limit <= 4, name
    assert (fns["train_start"].concurrency_id, fns["train_start"].concurrency_limit) == ("training", 1)
    assert demo._queue.max_size and demo._queue.max_size >= 8      # a bounded queue
    # Queued visitors see their place: progress is shown, not hidden, on the model calls.
    assert all(events[n].get("show_progress", "full") != "hidden" for n in INFERENCE_ENDPOINTS & set(events))


def test_served_folders_exclude_repo_weights_models_and_home(tiny_weights, tmp_path):
    from artlab.lab import Lab
    from artlab.paths import models_dir
    from artlab.ui.context import AppContext
    from artlab.ui.server import launch_options

    ctx = AppContext(Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path / "g")), kiosk=True)
    options = launch_options(ctx, "127.0.0.1", 7860)
    assert options["server_name"] == "127.0.0.1"                     # loopback unless told otherwise
    assert re.fullmatch(r"\d+mb", options["max_file_size"])
    allowed = [Path(p).resolve() for p in options["allowed_paths"]]
    for secret in (ROOT, ROOT / "weights", tiny_weights, models_dir(), Path.home(), tmp_path / "g"):
        assert all(p != secret.resolve() and not secret.resolve().is_relative_to(p) for p in allowed), secret
    assert any(p.endswith("gallery.sqlite") for p in options["blocked_paths"])
    assert options["mcp_server"] is False and options["show_error"] is False


def test_gradio_and_pillow_are_new_enough():
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^gradio(\[mcp\])?>=6\.(3[1-9]|[4-9]\d)", requirements, re.M)   # 6.31: issue 17
    assert re.search(r"^pillow>=12\.[2-9]", requirements, re.M | re.I)
    assert tuple(map(int, version("gradio").split(".")[:2])) >= (6, 31)
    assert tuple(map(int, version("pillow").split(".")[:2])) >= (12, 2)


# ------------------------------------------------------------------ pickles are never unpickled

class Tripwire:
    """Unpickling this creates a marker file: proof that a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_no_model_path_ever_unpickles(tiny_weights, tmp_path):
    import torch

    from artlab.checkpoints import WeightsError, load_into, read_tensors
    from artlab.store.uploads import UploadError, import_model

    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Tripwire(marker), protocol=2)
    assert not marker.exists()
    card = (tiny_weights / "art_classifier.json").read_bytes()
    torch_zip = tmp_path / "torch_save.zip"                      # torch.save's format: a zip holding data.pkl
    torch.save({"evil": Tripwire(marker)}, torch_zip)
    uploads = {
        "raw.pkl": payload,
        "pickle-named.zip": payload,
        "protocol0.zip": pickle.dumps(Tripwire(marker), protocol=0),
        "in-safetensors.zip": {"art_classifier.json": card, "art_classifier.safetensors": payload},
        "as-the-card.zip": {"art_classifier.json": payload, "art_classifier.safetensors": b"{}"},
        "beside.zip": {"art_classifier.json": card, "art_classifier.safetensors": b"", "x/model.ckpt": payload},
    }
    for name, content in uploads.items():
        path = tmp_path / name
        if isinstance(content, dict):
            with zipfile.ZipFile(path, "w") as z:
                for entry, data in content.items():
                    z.writestr(entry, data)
        else:
            path.write_bytes(content)
        with pytest.raises(UploadError):
            import_model(path, tmp_path / "out" / name)
    with pytest.raises(UploadError):
        import_model(torch_zip, tmp_path / "out" / "torch")
    # The loaders themselves: a pickle where safetensors should be.
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "art_classifier.safetensors").write_bytes(payload)
    shutil.copy(tiny_weights / "art_classifier.json", tmp_path / "w")
    with pytest.raises(WeightsError, match="pickle"):
        read_tensors(tmp_path / "w" / "art_classifier")
    with pytest.raises(WeightsError):
        load_into(torch.nn.Linear(1, 1), tmp_path / "w" / "art_classifier")
    assert not marker.exists(), "a pickle was unpickled"


def test_no_torch_load_without_weights_only():
    """The codebase never calls torch.load or pickle.load in a way that could run code."""
    offenders = []
    for path in (ROOT / "artlab").rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start():match.start() + 300].split("\n\n")[0]     # the call and its arguments
            if "weights_only=True" not in call:
                offenders.append(f"{path.name}: {call.splitlines()[0]}")
        if re.search(r"\bpickle\.loads?\(|\bjoblib\.load\(", text):
            offenders.append(f"{path.name}: pickle/joblib load")
    assert not offenders
