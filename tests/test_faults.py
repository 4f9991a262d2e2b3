"""Faults: a fine-tune killed (SIGKILL) mid-training and mid-write, a disk that fills up or turns
read-only during a save, and corrupt or missing weights at start-up (CLI and app).

The gallery's SIGKILL-during-index test is in test_gallery.py. Kills are aimed by a small hook
in the child process that prints a marker at the moment to kill (and, for the write, stops
half-way through the file), so the test is exact rather than a race.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_image

from artlab.inference.image import load_classifier
from artlab.store.registry import Registry

FINETUNE = ["--epochs", "2", "--views", "1", "--batch", "8", "--depth", "head", "--device", "cpu"]

# Run `python -m artlab ...` with a hook: print MARK and wait to be killed at the chosen moment.
HOOK = r"""
import sys, time
import artlab.training.finetune as ft, artlab.checkpoints as w
where = sys.argv.pop(1)

def mark():
    print("MARK", flush=True)
    time.sleep(600)

if where == "training":
    original = ft.train_head
    ft.train_head = lambda *a, **k: (mark(), original(*a, **k))[1]
else:  # "writing": half of the tensors file is on disk when the kill comes
    def half_then_wait(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\x00" * 4096)
            f.flush()
        mark()
    w.save_file = half_then_wait
from artlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def make_classes(root: Path) -> Path:
    for i, (name, color) in enumerate((("red", (200, 30, 30)), ("blue", (30, 30, 200)))):
        for k in range(6):
            make_image(root / name / f"{k}.png", color, pattern=i * 2 + k % 2)
    return root


@pytest.fixture()
def models_with_a_good_model(tiny_weights, tmp_path) -> Path:
    """A models directory whose active model is colours/v1 (the tiny classifier)."""
    models = tmp_path / "models"
    good = models / "colours" / "v1"
    good.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_weights / f"art_classifier{suffix}", good / f"art_classifier{suffix}")
    Registry(models).activate("colours/v1")
    return models


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_previous_model_is_active_and_whole(models: Path, before: dict[str, bytes]):
    registry = Registry(models)
    assert registry.active() == "colours/v1"
    assert registry.versions("colours") == [1]                  # no half-written v2 is listed
    assert [e["key"] for e in registry.entries()] == ["colours/v1"]
    assert all("error" not in e for e in registry.entries())
    good = {k: v for k, v in snapshot(models).items() if k.startswith("colours/v1/")}
    assert good == {k: v for k, v in before.items() if k.startswith("colours/v1/")}
    load_classifier(registry.active_path(), "cpu")              # loads: the app would use it


def test_sigkill_while_a_finetune_writes_keeps_the_previous_model(models_with_a_good_model, tiny_weights,
                                                                  tmp_path):
    """The kill lands with half of the new tensors file on disk: the worst moment. (A kill while
    training is the easy case, covered by the same design: nothing is written before the end.)"""
    moment = "writing"
    models = models_with_a_good_model
    data = make_classes(tmp_path / "colours")
    before = snapshot(models)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ARTLAB_WEIGHTS": str(tiny_weights)}
    proc = subprocess.Popen([sys.executable, "-c", HOOK, moment, "finetune", str(data), "--models", str(models),
                             "--name", "colours", "--activate", *FINETUNE], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and "MARK" not in line and proc.poll() is None:
            line = proc.stdout.readline()
        assert "MARK" in line, proc.stderr.read() if proc.poll() is not None else "no marker"
        if moment == "writing":                                  # the kill lands mid-file
            assert any(p.suffix == ".tmp" for p in models.joinpath("colours").rglob("*"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert_previous_model_is_active_and_whole(models, before)

    # The next fine-tune is not blocked by what the killed one left, and becomes v2.
    from artlab.cli import main
    assert main(["finetune", str(data), "--models", str(models), "--name", "colours", "--base", str(tiny_weights),
                 *FINETUNE]) == 0
    assert Registry(models).versions("colours") == [1, 2] and Registry(models).active() == "colours/v1"
    load_classifier(models / "colours" / "v2", "cpu")


@pytest.mark.parametrize("fault", ["disk full while writing", "read-only at the rename", "read-only at open"])
def test_disk_full_or_read_only_during_a_save(models_with_a_good_model, tiny_weights, tmp_path, monkeypatch,
                                              capsys, fault):
    """Root ignores chmod, so the file system's refusals are simulated where they would surface."""
    from artlab.cli import main

    models = models_with_a_good_model
    data = make_classes(tmp_path / "colours")
    before = snapshot(models)

    def no_space(tensors, path, metadata=None):
        Path(path).write_bytes(b"\x00" * 1000)                  # some bytes made it before the disk filled
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(args[0] if args else kwargs.get("dir")))

    if fault == "disk full while writing":
        monkeypatch.setattr("artlab.checkpoints.save_file", no_space)
    elif fault == "read-only at the rename":
        monkeypatch.setattr(os, "replace", read_only)
    else:
        monkeypatch.setattr("tempfile.mkdtemp", read_only)

    capsys.readouterr()
    code = main(["finetune", str(data), "--models", str(models), "--name", "colours", "--activate",
                 "--base", str(tiny_weights), *FINETUNE])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert os.strerror(errno.ENOSPC if "full" in fault else errno.EROFS) in err
    assert snapshot(models) == before                           # nothing left behind, nothing changed
    assert_previous_model_is_active_and_whole(models, before)


# ------------------------------------------------------------------ corrupt or missing weights at start-up

def _corrupt(folder: Path, how: str) -> str:
    """Break the classifier in `folder` one way; return the file the message must name."""
    weights, card = folder / "art_classifier.safetensors", folder / "art_classifier.json"
    if how == "missing weights":
        weights.unlink()
    elif how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "empty weights":
        weights.write_bytes(b"")
    elif how == "a pickle as weights":
        weights.write_bytes(b"\x80\x04\x95" + os.urandom(200))
    elif how == "missing card":
        card.unlink()
        return card.name
    elif how == "card not JSON":
        card.write_text("{nope")
        return card.name
    elif how == "card a JSON list":
        card.write_text("[1, 2]")
        return card.name
    elif how == "card without labels":
        card.write_text(json.dumps({k: v for k, v in json.loads(card.read_text()).items() if k != "labels"}))
        return card.name
    return weights.name


CORRUPTIONS = ["missing weights", "truncated weights", "empty weights", "a pickle as weights", "missing card",
               "card not JSON", "card a JSON list", "card without labels"]


@pytest.fixture()
def broken(tiny_weights, tmp_path):
    def make(how: str) -> tuple[Path, str]:
        folder = tmp_path / how.replace(" ", "_")
        shutil.copytree(tiny_weights, folder)
        return folder, _corrupt(folder, how)
    return make


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_predict_names_the_broken_file(broken, tmp_path, capsys, how):
    from artlab.cli import main

    folder, name = broken(how)
    capsys.readouterr()
    code = main(["predict", "--weights", str(folder), str(make_image(tmp_path / "a.png"))])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and name in err and "Traceback" not in err, err


@pytest.mark.parametrize("how", ["truncated weights", "card a JSON list", "a pickle as weights", "missing card"])
def test_app_refuses_to_start_and_names_the_broken_file(broken, tmp_path, capsys, monkeypatch, how):
    """`python app.py` is one call of artlab.ui.server.main; run in-process (gradio is slow to import)."""
    from artlab.ui import server

    folder, name = broken(how)
    monkeypatch.setattr(server, "serve", lambda *a, **k: pytest.fail("the app started with broken weights"))
    with pytest.raises(SystemExit) as exit_info:
        server.main(["--weights", str(folder), "--gallery", str(tmp_path / "g"), "--port", "0", "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and name in err and str(folder) in err, err


def test_app_starts_with_good_weights(tiny_weights, tmp_path, monkeypatch):
    from artlab.ui import server

    started = []
    monkeypatch.setattr(server, "serve", lambda ctx, host, port: started.append(ctx.lab.weights))
    server.main(["--weights", str(tiny_weights), "--gallery", str(tmp_path / "g"), "--port", "0"])
    assert started == [str(tiny_weights)]


def test_a_publish_killed_mid_copy_does_not_block_the_next(tiny_weights, tmp_path, monkeypatch):
    """The Train tab copies a model into the models directory via a hidden .vN.tmp folder; a kill
    mid-copy leaves that folder, which must neither be listed nor stop the next publish."""
    from artlab.curation import CurationSession
    from artlab.curator import CuratorGate
    from artlab.lab import Lab
    from artlab.ui.train_handlers import make_publish

    models = tmp_path / "models"
    stale = models / "colours" / ".v1.tmp"
    stale.mkdir(parents=True)
    (stale / "art_classifier.safetensors").write_bytes(b"\0" * 100)         # half a copy
    assert Registry(models).entries() == []
    session = CurationSession(tmp_path / "visitor")
    session.model = str(shutil.copytree(tiny_weights, tmp_path / "mine"))
    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "pw")
    assert "colours/v1" in make_publish(Lab(models_dir=str(models)), CuratorGate())("pw", "colours", session)
    assert Registry(models).active() == "colours/v1" and not stale.exists()
    load_classifier(Registry(models).active_path(), "cpu")


def test_temporaries_of_a_dead_writer_are_removed_on_the_next_write(tmp_path):
    import subprocess
    import sys

    from artlab.files import remove_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "model"
    stale = tmp_path / f".model.{dead}.abc123.tmp"
    stale.mkdir()
    (stale / "art_classifier.safetensors").write_bytes(b"half")
    mine = tmp_path / f".model.{__import__('os').getpid()}.xyz.tmp"   # a live writer's: kept
    mine.mkdir()
    remove_stale(out)
    assert not stale.exists() and mine.exists()
