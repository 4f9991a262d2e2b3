"""The predict command's contract: one JSON object per input, in order; exit 1 if any failed."""

import json
import subprocess
import sys

import pytest
import torch
from bad_images import make_bad_files, make_odd_files
from conftest import ROOT, make_image

from artlab.cli import main
from artlab.inference.image import ArtModels
from artlab.labels import STYLES, SUBJECTS


def run_predict(capsys, *args):
    code = main(["predict", *args])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, lines


def test_json_contract_for_good_images(capsys, tmp_path, tiny_weights):
    paths = [str(make_image(tmp_path / f"{i}.jpg", pattern=i)) for i in range(3)]
    code, lines = run_predict(capsys, "--weights", str(tiny_weights), "--json", *paths)
    assert code == 0
    assert [line["path"] for line in lines] == paths
    for line in lines:
        assert set(line) == {"path", "style", "subject", "unsure", "psnr"} and line["unsure"] is False
        assert [name for name, _ in line["style"]] != [] and {n for n, _ in line["style"]} == set(STYLES)
        assert {n for n, _ in line["subject"]} == set(SUBJECTS)
        probs = [p for _, p in line["style"]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-2
        assert isinstance(line["psnr"], float)


def test_every_input_is_answered_in_order_and_failures_exit_1(capsys, tmp_path, tiny_weights):
    bad = make_bad_files(tmp_path / "bad")
    odd = make_odd_files(tmp_path / "odd")
    inputs = [str(p) for pair in zip(bad.values(), odd.values()) for p in pair]
    code, lines = run_predict(capsys, "--weights", str(tiny_weights), "--json", *inputs)
    assert code == 1
    assert [line["path"] for line in lines] == inputs
    bad_paths = {str(p) for p in bad.values()}
    for line in lines:
        if line["path"] in bad_paths:
            assert set(line) == {"path", "error"} and line["path"] in line["error"]
        else:
            assert "style" in line and "error" not in line


def test_readable_table_without_json(capsys, tmp_path, tiny_weights):
    path = make_image(tmp_path / "a.png")
    assert main(["predict", "--weights", str(tiny_weights), str(path)]) == 0
    out = capsys.readouterr().out
    assert "style" in out and "subject" in out and "dB" in out


def test_missing_weights_is_a_clear_error(capsys, tmp_path):
    code = main(["predict", "--weights", str(tmp_path), str(make_image(tmp_path / "a.jpg"))])
    assert code == 2
    assert "art_classifier" in capsys.readouterr().err


def test_batch_and_single_agree(tmp_path, tiny_weights):
    models = ArtModels(tiny_weights, "cpu")
    images = [models.prepare(make_image(tmp_path / f"{i}.jpg", pattern=i, size=(50 + 9 * i, 40))) for i in range(3)]
    together = models.analyze(images)
    for image, batched in zip(images, together):
        alone = models.analyze([image])[0]
        for head in ("style", "subject"):
            assert [n for n, _ in alone.labels[head]] == [n for n, _ in batched.labels[head]]
            assert max(abs(a - b) for (_, a), (_, b) in zip(alone.labels[head], batched.labels[head])) < 1e-4
        assert torch.allclose(alone.embedding, batched.embedding, atol=1e-4)


@pytest.mark.skipif(not (ROOT / "weights" / "art_classifier.safetensors").exists(), reason="no shipped weights")
def test_real_command_with_shipped_weights(tmp_path):
    path = make_image(tmp_path / "a.jpg", size=(120, 90))
    result = subprocess.run([sys.executable, "-m", "artlab", "predict", "--json", str(path), str(tmp_path / "no.jpg")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first["style"][0][0] in STYLES and 5 < first["psnr"] < 60
    assert second == {"path": str(tmp_path / "no.jpg"), "error": f"{tmp_path / 'no.jpg'}: file not found"}
    assert "Traceback" not in result.stderr
