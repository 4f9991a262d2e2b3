"""The model soup: averaging two classifiers' backbones, recalibrating BatchNorm, the soup command."""

import hashlib
import json

import pytest
import torch
from torch import nn

from artlab.checkpoints import WeightsError, read_tensors, save_checkpoint
from artlab.cli import main
from artlab.labels import STYLES, SUBJECTS
from artlab.models.classifier import ArtClassifier
from artlab.training.soup import average_backbones, recalibrate_batchnorm

HEADS = {"style": len(STYLES), "subject": len(SUBJECTS)}


def _classifier(seed: int, texture: bool = True) -> ArtClassifier:
    torch.manual_seed(seed)
    return ArtClassifier(HEADS, texture=texture, drop_path=0.0).eval()


def test_average_backbones_mixes_only_the_backbone(one_thread):
    base, other = _classifier(0), _classifier(1, texture=False)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    average_backbones(base, other, 0.25)
    after, theirs = base.state_dict(), other.state_dict()
    name = "backbone.stem.0.weight"
    assert torch.allclose(after[name], 0.25 * before[name] + 0.75 * theirs[name])
    assert not torch.equal(after[name], before[name])
    for key in before:
        if not key.startswith("backbone."):        # texture branch, neck and heads stay the base's
            assert torch.equal(after[key], before[key]), key


def test_average_backbones_refuses_mismatched_or_out_of_range():
    base = _classifier(0)
    other = _classifier(1)
    other.backbone.head = nn.Conv2d(320, 8, 1)       # another architecture
    with pytest.raises(WeightsError, match="differ in architecture"):
        average_backbones(base, other, 0.5)
    with pytest.raises(ValueError):
        average_backbones(base, _classifier(1), 1.5)


def test_recalibrate_batchnorm_measures_the_data_and_moves_no_weight(one_thread):
    model = _classifier(0)
    first_norm = model.backbone.stem[1]
    assert isinstance(first_norm, nn.BatchNorm2d)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    momentum = first_norm.momentum
    images = torch.randint(0, 256, (12, 3, 40, 40), dtype=torch.uint8)
    recalibrate_batchnorm(model, images, 48, "cpu", batch_size=4)   # three equal batches

    # The stem's norm must now hold the mean over all twelve images of what feeds it.
    from artlab.data.transforms import resize_for_eval
    with torch.no_grad():
        feeding = model.backbone.stem[0](resize_for_eval(images, 48))
    assert torch.allclose(first_norm.running_mean, feeding.mean(dim=(0, 2, 3)), atol=1e-4)
    assert first_norm.momentum == momentum and not model.training and not first_norm.training
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_soup_command_writes_a_loadable_model_with_its_card(class_folders, tmp_path, one_thread, capsys):
    for seed, name, texture in ((0, "a", True), (1, "b", False)):
        save_checkpoint(_classifier(seed, texture), tmp_path / name / "art_classifier", {
            "name": "art_classifier", "config": {"texture": texture, "embed_dim": 512},
            "labels": {"style": list(STYLES), "subject": list(SUBJECTS)}, "input_size": 48,
            "command": f"made by the test ({name})"}, dtype=torch.float32)
    out = tmp_path / "soup"
    code = main(["soup", "--base", str(tmp_path / "a"), "--with", str(tmp_path / "b"), "--data", str(class_folders),
                 "--out", str(out), "--size", "56", "--calibration-images", "12", "--device", "cpu"])
    # (BatchNorm is calibrated at the base card's 48 px; the soup is used at 56 px.)
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == {"style", "subject"}

    card = json.loads((out / "art_classifier.json").read_text())
    assert card["input_size"] == 56 and card["labels"]["style"] == list(STYLES)
    soup = card["soup"]
    assert soup["base_weight"] == 0.5 and "12 train images (fit part) at 48 px" in soup["batchnorm"]
    other_file = tmp_path / "b" / "art_classifier.safetensors"
    assert soup["ingredients"]["other"]["sha256"] == hashlib.sha256(other_file.read_bytes()).hexdigest()
    assert soup["ingredients"]["base"]["command"] == "made by the test (a)"
    assert card["metrics"]["val"]["style"]["count"] == 2 * len(STYLES)
    assert card["command"].startswith("python -m artlab soup")

    # The soup answers through the ordinary predict path, with its own input size.
    tensors = read_tensors(out / "art_classifier.safetensors")
    base_tensors = read_tensors(tmp_path / "a" / "art_classifier.safetensors")
    assert torch.equal(tensors["neck.1.weight"], base_tensors["neck.1.weight"].to(tensors["neck.1.weight"].dtype))
    image = next((class_folders / "styles" / "val").rglob("*.jpg"))
    assert main(["predict", "--weights", str(out), "--json", "--no-reconstruct", str(image)]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert len(record["style"]) == len(STYLES)
