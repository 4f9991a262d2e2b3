"""Texts and pages answer quickly while paintings are analysed (issue 14): the image models run on
one thread of lower priority, and ONNX Runtime's threads, made there, inherit it."""

import os
import sys
import threading

import pytest
from conftest import make_image

from artlab.lab import Lab

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux only")


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.fixture
def lab(tiny_weights, tmp_path):
    return Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path / "gallery"), device="cpu",
               models_dir=str(tmp_path / "models"))


@linux_only
def test_pictures_are_analysed_on_one_thread_of_lower_priority(lab, tmp_path):
    seen = []

    def probe():
        seen.append((threading.current_thread().name, _niceness(), lab.on_image_thread(_niceness)))

    lab.on_image_thread(probe)
    lab.on_image_thread(probe)
    (name, nice, nested), (again, *_rest) = seen
    assert name.startswith("artlab-images") and again == name          # one thread, reused
    assert nice >= min(19, _niceness() + 10) and nested == nice        # lower; reentrant without deadlock
    look = lab.look(make_image(tmp_path / "a.png", pattern=2).read_bytes())
    assert set(look.analysis.labels) == {"style", "subject"}


@linux_only
def test_the_priority_step_is_a_setting(lab, monkeypatch):
    monkeypatch.setenv("ARTLAB_IMAGE_NICE", "0")
    assert lab.on_image_thread(_niceness) == _niceness()


@linux_only
def test_onnx_runtime_threads_made_on_the_image_thread_inherit_its_priority(lab):
    before = {t for t in os.listdir("/proc/self/task")}
    lab.on_image_thread(lab.models)
    made = [t for t in os.listdir("/proc/self/task") if t not in before]
    assert made, "loading the models made no thread"
    for tid in made:
        with open(f"/proc/self/task/{tid}/stat") as f:
            nice = int(f.read().rsplit(")", 1)[1].split()[16])      # field 19 of stat: nice
        assert nice >= min(19, _niceness() + 10), (tid, nice)
