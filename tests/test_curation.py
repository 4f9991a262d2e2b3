"""artlab.curation: a visitor's fine-tuning session without any web framework.

Fast: the class folders are a few synthetic pictures; training is faked except in one test, which
trains the tiny random-init weights' head for one epoch.
"""

import shutil
import threading
import zipfile

import pytest
from conftest import make_image

from artlab import curation
from artlab.curation import (
    CurationSession,
    Done,
    Epoch,
    Failed,
    Progress,
    export_zip,
    try_model,
)
from artlab.store.uploads import UploadError
from artlab.training.finetune import FinetuneConfig
from artlab.workdirs import process_dir


@pytest.fixture()
def session():
    session = CurationSession()
    yield session
    session.close()


def pictures(folder, count, color=(200, 30, 30), pattern=0):
    return [make_image(folder / f"{k}.png", color, pattern=pattern + k % 2) for k in range(count)]


def two_classes(session, tmp_path, count=6):
    for name, color, pattern in (("red", (200, 30, 30), 0), ("blue", (30, 30, 200), 3)):
        session.add_images(pictures(tmp_path / name, count, color, pattern), name)


# ------------------------------------------------------------------ the folder and its data

def test_a_session_lives_in_the_apps_private_folder_until_closed():
    session = CurationSession()
    assert session.folder.parent == process_dir() and session.folder.name.startswith("artlab-train-")
    assert session.classes_dir.is_dir() and session.counts() == {} and session.model is None
    session.close()
    assert not session.folder.exists()


def test_class_names_are_cleaned_and_empty_ones_refused(session):
    assert session.add_class("abc\u202egpj") == "abcgpj"
    assert session.add_class("a/b") == "a_b"
    with pytest.raises(UploadError):
        session.add_class("  ")
    assert session.counts() == {"abcgpj": 0, "a_b": 0}


def test_images_are_added_and_unreadable_files_skipped(session, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    result = session.add_images([*pictures(tmp_path, 3), tmp_path / "notes.png"], "red")
    assert result.counts() == {"red": 3} and len(result.skipped) == 1 and "notes.png" in result.skipped[0]
    assert session.counts() == {"red": 3}


def test_a_zip_joins_the_class_folders_without_overwriting(session, tmp_path):
    session.add_images(pictures(tmp_path / "first", 2), "cats")
    archive = tmp_path / "classes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for k, path in enumerate(pictures(tmp_path / "zip", 3)):
            z.write(path, f"cats/{k}.png")
            z.write(path, f"dogs/{k}.png")
    result = session.add_zip(archive)
    assert result.counts() == {"cats": 3, "dogs": 3}
    assert all(path.parent.parent == session.classes_dir for files in result.classes.values() for path in files)
    assert session.counts() == {"cats": 5, "dogs": 3}
    assert [p.name for p in session.folder.iterdir()] == ["classes"]          # the staging folder is gone


def test_a_session_may_not_take_more_than_its_share_of_the_disk(session, tmp_path, monkeypatch):
    one = make_image(tmp_path / "one.png")
    files = [shutil.copyfile(one, tmp_path / f"{k}.png") for k in range(4)]
    monkeypatch.setattr(curation, "MAX_SESSION_BYTES", 2 * files[0].stat().st_size + 10)
    result = session.add_images(files, "red")
    assert len(result.classes["red"]) == 2 and len(result.skipped) == 2
    assert session.room_left() < files[0].stat().st_size


# ------------------------------------------------------------------ the checks

def test_problems_name_what_stops_training(session, tmp_path):
    assert session.problems() == ["Add at least 2 classes."]
    session.add_images(pictures(tmp_path / "r", 6), "red")
    session.add_images(pictures(tmp_path / "b", 2), "blue")
    assert session.problems() == ["Too few images (at least 5 per class): blue (2)."]
    session.add_images(pictures(tmp_path / "b2", 4), "blue")
    assert session.problems() == []


def test_problems_warn_of_imbalance_and_the_caps(session, tmp_path, monkeypatch):
    session.add_images(pictures(tmp_path / "r", 26), "red")
    session.add_images(pictures(tmp_path / "b", 5), "blue")
    assert session.problems() == [("Class imbalance over 5:1 (red: 26, blue: 5); "
                                   "the model will lean towards the bigger classes.")]
    monkeypatch.setattr(curation, "MAX_IMAGES", 30)
    monkeypatch.setattr(curation, "MAX_CLASSES", 1)
    assert session.problems()[:2] == ["2 classes: more than the 1 allowed; remove some.",
                                      "31 images: over the cap of 30; remove some."]


# ------------------------------------------------------------------ training (faked)

def fake_finetune(behaviour):
    """A stand-in for finetune(): two epochs, then whatever `behaviour(should_stop)` does."""
    def finetune(data_dir, out_dir, *, base, config, should_stop, on_epoch, progress, command):
        progress(0.1, "decoding")
        for epoch in (1, 2):
            on_epoch({"stage": "head", "epoch": epoch, "train_loss": 1.0 / epoch})
        return behaviour(should_stop)
    return finetune


def test_training_yields_progress_epochs_then_the_model(session, tmp_path, monkeypatch):
    monkeypatch.setattr(curation, "finetune", fake_finetune(lambda stop: {"name": "fake"}))
    events = list(session.train(None, FinetuneConfig()))
    assert [type(e) for e in events] == [Progress, Epoch, Epoch, Done]
    assert [e.record["epoch"] for e in events if isinstance(e, Epoch)] == [1, 2]
    assert events[-1].card == {"name": "fake"} and events[-1].model == str(session.folder / "models" / "run1")
    assert session.model == events[-1].model and session.runs == 1
    assert not session.stop()                                             # nothing trains any more


def test_a_failure_is_one_line_for_the_visitor(session, monkeypatch):
    def broken(stop):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(curation, "finetune", fake_finetune(broken))
    events = list(session.train(None, FinetuneConfig()))
    assert events[-1] == Failed("training failed: out of memory") and session.model is None


def test_messages_do_not_name_the_servers_folders(session, tmp_path):
    events = list(session.train(None, FinetuneConfig(device="cpu")))      # no classes yet
    assert isinstance(events[-1], Failed) and str(session.folder) not in events[-1].message
    assert "your classes" in events[-1].message


def test_stop_ends_the_run_and_closing_the_generator_stops_it_too(session, monkeypatch):
    stopped = []

    def until_stopped(stop):
        stopped.append(stop.wait(10))
        return {"name": "stopped"}
    monkeypatch.setattr(curation, "finetune", fake_finetune(until_stopped))
    events = session.train(None, FinetuneConfig())
    next(events)                                                          # running
    assert session.stop() and curation.training_busy()
    assert isinstance(list(events)[-1], Done) and stopped == [True]

    events = session.train(None, FinetuneConfig())
    next(events)
    events.close()                                                        # the visitor left
    for _ in range(100):
        if len(stopped) == 2:
            break
        threading.Event().wait(0.05)
    assert stopped == [True, True]


def test_a_run_queued_behind_another_waits_and_is_skipped_when_stopped(session, monkeypatch):
    ran = []
    monkeypatch.setattr(curation, "finetune", fake_finetune(lambda stop: ran.append(1) or {"name": "fake"}))
    got = []
    with curation._busy:                                                  # another visitor's model trains
        assert curation.training_busy()
        events = session.train(None, FinetuneConfig())
        waiting = threading.Thread(target=lambda: got.append(next(events)))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and got == []                           # queued: nothing yet
        assert session.stop()
    waiting.join(5)
    assert got == [Failed("stopped before training started")] and ran == [] and session.model is None


# ------------------------------------------------------------------ a real run on tiny weights

def test_train_try_and_export_with_tiny_weights(session, tmp_path, tiny_weights, one_thread):
    from artlab.lab import Lab

    two_classes(session, tmp_path)
    config = FinetuneConfig(epochs=1, lr=0.01, batch_size=8, depth="head", device="cpu")
    events = list(session.train(str(tiny_weights), config))
    assert isinstance(events[-1], Done), events[-1]
    assert set(events[-1].card["metrics"]["val"]["per_class"]) == {"red", "blue"}

    lab = Lab(weights=str(tiny_weights), device="cpu")
    answer = try_model(lab, session.model, (tmp_path / "red" / "0.png").read_bytes())
    assert set(answer) == {"red", "blue"} and abs(sum(answer.values()) - 1) < 1e-4

    path, onnx_problem = export_zip(session.model)
    assert onnx_problem is None
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["art_classifier.json", "art_classifier.safetensors", "model.onnx"]


def test_a_closed_session_s_models_leave_the_lab(tiny_weights, tmp_path):
    """The Lab keeps a visitor's model loaded for Try it; when their session ends it goes too."""
    import shutil

    from artlab.lab import Lab

    lab = Lab(weights=str(tiny_weights), device="cpu", gallery_dir=str(tmp_path / "g"))
    theirs = tmp_path / "session" / "models" / "run1"
    shutil.copytree(tiny_weights, theirs)
    lab.models()
    lab.models(str(theirs))
    assert str(theirs) in lab._models
    lab.forget(tmp_path / "session")
    assert str(theirs) not in lab._models and str(tiny_weights) in lab._models
