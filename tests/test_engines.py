"""Every inference path gives the same answers, and a forced engine or precision is obeyed (issue 14).

The paths: PyTorch in fp32 (the reference), PyTorch in bf16, the ONNX engine through ArtModels (the app,
index, benchmarks), with and without Grad-CAM, OnnxArtModels alone and `predict` in a process of its own
(which then never imports torch). No timings here: speed lives in benchmarks/.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image

from artlab.inference import engine
from artlab.inference.engine import OnnxArtModels, engine_for, open_image_models
from artlab.inference.image import ArtModels

pytest.importorskip("onnxruntime")
TOLERANCE = 0.02      # probabilities of any path vs PyTorch in fp32


def _pictures(tmp_path, count=4):
    """Smooth pictures of different sizes and shapes (noise would exaggerate bf16's rounding)."""
    out = []
    for i in range(count):
        g = np.random.default_rng(i)
        low = g.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        im = Image.fromarray(low).resize((90 + 23 * i, 70 + 11 * (3 - i)), Image.Resampling.BICUBIC)
        path = tmp_path / f"p{i}.png"
        im.save(path)
        out.append(path)
    return out


def _models(monkeypatch, weights, engine_name, precision="fp32"):
    monkeypatch.setenv("ARTLAB_ENGINE", engine_name)
    monkeypatch.setenv("ARTLAB_PRECISION", precision)
    return ArtModels(weights, "cpu")


def _same_answers(reference, other, exact_order=True):
    for want, got in zip(reference, other):
        for head in want.labels:
            names = [n for n, _ in want.labels[head]]
            theirs = [n for n, _ in got.labels[head]]
            assert (names == theirs) if exact_order else (names[0] == theirs[0]), head
            probs, their_probs = dict(want.labels[head]), dict(got.labels[head])
            assert max(abs(probs[n] - their_probs[n]) for n in names) < TOLERANCE, head
        assert float((torch.as_tensor(want.embedding) * torch.as_tensor(got.embedding)).sum()) > 0.99
        if want.psnr is not None:
            assert abs(want.psnr - got.psnr) < 0.1


@pytest.fixture(scope="module")
def reference(tiny_weights):
    with pytest.MonkeyPatch.context() as mp:
        models = _models(mp, tiny_weights, "torch")
        assert models.engine == "torch" and models.onnx is None and models.dtype == torch.float32
        return models


def test_onnx_engine_gives_the_fp32_answers(reference, tiny_weights, monkeypatch, tmp_path):
    images = [reference.prepare(p) for p in _pictures(tmp_path)]
    want = reference.analyze(images)
    onnx = _models(monkeypatch, tiny_weights, "onnx")
    assert onnx.engine == "onnx" and onnx.precision == "fp32"
    _same_answers(want, onnx.analyze(images))
    _same_answers(want, onnx.analyze(images, explain=True))          # Grad-CAM on: the same answer
    _same_answers(want, [onnx.analyze([im])[0] for im in images])   # one at a time
    alone = OnnxArtModels(tiny_weights).analyze(images)              # predict's models, no torch
    _same_answers(want, alone)
    assert isinstance(alone[0].embedding, np.ndarray) and isinstance(onnx.analyze(images)[0].embedding, torch.Tensor)


def test_grad_cam_from_the_onnx_graph_is_autograds(reference, tiny_weights, monkeypatch, tmp_path):
    """The engine's Grad-CAM (closed-form gradients in the graph, no second pass) is the autograd one."""
    from artlab.inference.engine import pixels

    images = [reference.prepare(p) for p in _pictures(tmp_path)]
    x = pixels(images, reference.input_size)
    with torch.inference_mode():
        _, want = reference._probs_and_cams(torch.from_numpy(x))
    onnx = _models(monkeypatch, tiny_weights, "onnx")
    got = onnx.onnx.probabilities(x, explain=True)["cam"]
    assert got.shape == tuple(want.shape) and np.allclose(got, want.numpy(), atol=1e-4)
    (result,) = onnx.analyze(images[:1], explain=True)
    assert result.heatmap is not None and result.heatmap.size == images[0].size and "cam" not in result.extra


def test_bf16_torch_path_agrees_with_fp32(reference, tiny_weights, monkeypatch, tmp_path):
    images = [reference.prepare(p) for p in _pictures(tmp_path)]
    bf16 = _models(monkeypatch, tiny_weights, "torch", precision="bf16")
    assert bf16.dtype == torch.bfloat16 and bf16.precision == "bfloat16"
    _same_answers(reference.analyze(images), bf16.analyze(images), exact_order=False)


def test_predict_process_matches_and_never_imports_torch(reference, tiny_weights, tmp_path):
    paths = _pictures(tmp_path)
    probe = ("import json, sys; from artlab.cli import main; code = main(sys.argv[1:]); "
             "print(json.dumps({'torch': 'torch' in sys.modules}))")
    env = {**__import__("os").environ, "ARTLAB_ENGINE": "onnx"}
    result = subprocess.run([sys.executable, "-c", probe, "predict", "--json", "--weights", str(tiny_weights),
                             *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    *lines, last = result.stdout.splitlines()
    assert json.loads(last) == {"torch": False}
    want = reference.analyze([reference.prepare(p) for p in paths])
    for record, analysis in zip(map(json.loads, lines), want):
        for head, ranked in analysis.labels.items():
            assert [n for n, _ in record[head]] == [n for n, _ in ranked]
            assert max(abs(p - q) for (_, p), (_, q) in zip(record[head], ranked)) < TOLERANCE
        assert abs(record["psnr"] - analysis.psnr) < 0.1


def test_evaluate_reports_the_engine_and_the_same_accuracy(tiny_weights, class_folders, monkeypatch):
    from artlab.training.evaluate import evaluate_folder

    reports = {}
    for name in ("torch", "onnx"):
        monkeypatch.setenv("ARTLAB_ENGINE", name)
        monkeypatch.setenv("ARTLAB_PRECISION", "fp32")
        reports[name] = evaluate_folder(class_folders / "styles" / "val", tiny_weights, device="cpu")
        assert reports[name]["engine"] == name and reports[name]["precision"] == "float32"
    assert reports["torch"]["heads"]["style"]["accuracy"] == reports["onnx"]["heads"]["style"]["accuracy"]


# ------------------------------------------------------------------ the choice

@pytest.mark.parametrize("setting, device, expected", [
    ("torch", "cpu", "torch"), ("onnx", "cpu", "onnx"), ("onnx", "cuda", "onnx"),
    ("auto", "cpu", "onnx"), ("auto", "cuda", "torch"), ("", "mps", "torch"), ("", "cpu:0", "onnx"),
])
def test_engine_setting_is_obeyed(monkeypatch, setting, device, expected):
    monkeypatch.setenv("ARTLAB_ENGINE", setting)
    monkeypatch.delenv("ARTLAB_PRECISION", raising=False)
    assert engine_for(device) == expected


def test_forced_bf16_means_torch_and_nonsense_is_refused(monkeypatch):
    monkeypatch.delenv("ARTLAB_ENGINE", raising=False)
    monkeypatch.setenv("ARTLAB_PRECISION", "bf16")
    assert engine_for("cpu") == "torch"
    monkeypatch.setenv("ARTLAB_ENGINE", "tensorrt")
    with pytest.raises(ValueError, match="ARTLAB_ENGINE"):
        engine_for("cpu")


def test_without_onnxruntime_auto_falls_back_and_onnx_is_refused(monkeypatch):
    monkeypatch.setattr(engine, "have_onnxruntime", lambda: False)
    monkeypatch.setenv("ARTLAB_ENGINE", "auto")
    assert engine_for("cpu") == "torch"
    monkeypatch.setenv("ARTLAB_ENGINE", "onnx")
    with pytest.raises(ValueError, match="onnxruntime is not installed"):
        engine_for("cpu")


def test_predict_opens_the_chosen_engine(tiny_weights, monkeypatch):
    monkeypatch.setenv("ARTLAB_ENGINE", "torch")
    assert isinstance(open_image_models(tiny_weights, "cpu", autoencoder=False), ArtModels)
    monkeypatch.setenv("ARTLAB_ENGINE", "onnx")
    assert isinstance(open_image_models(tiny_weights, "cpu", autoencoder=False), OnnxArtModels)


# ------------------------------------------------------------------ the ONNX files

def test_onnx_files_are_made_once_atomically_and_pruned(tiny_weights, monkeypatch, tmp_path):
    from artlab.checkpoints import CLASSIFIER_NAME, Checkpoint

    monkeypatch.setenv("ARTLAB_ONNX_CACHE", str(tmp_path / "cache"))
    checkpoint = Checkpoint.find(tiny_weights, CLASSIFIER_NAME)
    path = engine.ensure_onnx(checkpoint)
    assert path.parent == tmp_path / "cache" and path.name.startswith("art_classifier-")
    assert [p.name for p in path.parent.iterdir()] == [path.name]          # no temporary left behind

    def no_export(*args):
        raise AssertionError("exported again")
    monkeypatch.setattr("artlab.inference.export.export_for_engine", no_export)
    assert engine.ensure_onnx(checkpoint) == path                           # kept, not remade
    changed = Checkpoint(checkpoint.path, {**checkpoint.card, "input_size": 72})
    assert engine.onnx_file(changed) != path                                # a new card is a new file

    for i in range(engine.MAX_CACHED + 3):
        (path.parent / f"old{i}.onnx").write_bytes(b"x")
    engine._prune(path.parent, keep=engine.MAX_CACHED)
    assert len(list(path.parent.glob("*.onnx"))) == engine.MAX_CACHED
