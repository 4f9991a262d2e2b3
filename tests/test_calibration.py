"""Calibrated answers and the unsure state (issue 15): the arithmetic, both engines, the command."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from artlab.answers import picture_json
from artlab.cli import main
from artlab.data.nonpaintings import KINDS, make_nonpaintings
from artlab.inference.calibration import (
    Calibration,
    Space,
    UnsureRule,
    calibration_from_card,
    companion_file,
    temper,
)
from artlab.training import metrics_calibration as mc
from artlab.training.calibrate import fit_space


def _softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _overconfident(n=4000, classes=5, true_temperature=2.0, seed=0):
    """Probabilities from logits whose labels were drawn at `true_temperature`: the model's own
    softmax (temperature 1) is overconfident by that factor."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    truth = _softmax(logits / true_temperature)
    labels = np.array([rng.choice(classes, p=p) for p in truth])
    return _softmax(logits).astype(np.float32), labels


def test_temperature_keeps_the_ranking_and_one_is_the_identity():
    probs, _ = _overconfident(200)
    assert temper(probs, 1.0) is probs
    for t in (0.5, 3.0):
        tempered = temper(probs, t)
        assert np.allclose(tempered.sum(1), 1, atol=1e-5)
        assert (tempered.argmax(1) == probs.argmax(1)).all()
    assert (temper(probs, 3.0).max(1) < probs.max(1) + 1e-6).all()       # hotter: less sure


def test_a_fitted_temperature_finds_the_overconfidence_and_removes_the_calibration_error():
    probs, labels = _overconfident()
    t = mc.fit_temperature(probs, labels)
    assert 1.7 < t < 2.3
    before, after = mc.expected_calibration_error(probs, labels), mc.expected_calibration_error(temper(probs, t), labels)
    assert before > 0.1 and after < 0.03
    tempered, fold_temperatures = mc.cross_fitted_temperature(probs, labels, k=5)
    assert len(fold_temperatures) == 5 and all(1.6 < f < 2.4 for f in fold_temperatures)
    assert mc.expected_calibration_error(tempered, labels) < 0.04
    # what chance alone gives a calibrated model: small on 4,000 images, larger on 150
    assert mc.chance_error(tempered, draws=50) < 0.03 < mc.chance_error(tempered[:150], draws=50)


def test_the_whitened_distance_is_mahalanobis_to_the_nearest_centre():
    rng = np.random.default_rng(0)
    scales = np.array([10.0, 1.0, 0.1])
    rows = np.concatenate([rng.normal(0, 1, (3000, 3)) * scales + c for c in ([0, 0, 0], [50, 0, 0])])
    groups = np.repeat([0, 1], 3000)
    centres, whitening = fit_space(rows, groups, rank=3, shrink=0.0)
    space = Space("pooled", centres, whitening, max_distance=9.0)
    # one unit of spread along each axis is distance 1, however wide the class is on that axis
    probe = np.array([[10.0, 0, 0], [0, 1.0, 0], [0, 0, 0.1], [25.0, 0, 0], [0, 0, 1.0]])
    assert np.allclose(space.distances(probe)[:3], 1.0, atol=0.1)
    rule = UnsureRule((space,))
    assert rule.flags({"pooled": probe}).tolist() == [False, False, False, False, True]
    # what is stored is what was fitted (a column selection comes out in Fortran order)
    assert whitening.flags["C_CONTIGUOUS"] and centres.flags["C_CONTIGUOUS"]


def test_a_card_without_calibration_answers_as_before():
    probs = {"style": _overconfident(10, 7)[0], "embedding": np.ones((10, 4), np.float32)}
    calibration = calibration_from_card({"labels": {}})
    assert calibration == Calibration() and calibration.apply(probs) == probs


def test_a_card_with_a_rule_but_no_companion_file_has_temperatures_only():
    card = {"calibration": {"temperature": {"style": 2.0, "bad": 1e9}, "unsure": {"max_distance": {"pooled": 1.0}}}}
    calibration = calibration_from_card(card, {})
    assert calibration.temperatures == {"style": 2.0} and calibration.unsure is None


def test_nonpaintings_come_in_every_kind_and_are_reproducible():
    first, again = make_nonpaintings(18, seed=3), make_nonpaintings(18, seed=3)
    assert [k for k, _ in first] == list(KINDS) * 2
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (_, a), (_, b) in zip(first, again))
    assert all(isinstance(p, Image.Image) and p.mode == "RGB" for _, p in first)


@pytest.fixture(scope="module")
def calibrated_weights(tiny_weights, class_folders, tmp_path_factory):
    """The tiny model calibrated by the command, on the tiny data."""
    folder = tmp_path_factory.mktemp("calibrated")
    for f in tiny_weights.iterdir():
        shutil.copy(f, folder / f.name)
    assert main(["calibrate", "--data", str(class_folders), "--weights", str(folder), "--device", "cpu"]) == 0
    return folder


def test_the_calibrate_command_writes_the_card_and_its_companion(calibrated_weights, class_folders):
    card = json.loads((calibrated_weights / "art_classifier.json").read_text())
    section = card["calibration"]
    assert set(section["temperature"]) == {"style", "subject"}
    assert section["chosen_on"].startswith("val, 5-fold cross-fitted")     # the tiny card trained on all of train
    val = section["metrics"]["val"]
    assert val["style"]["count"] == 14 and 0 <= val["unsure_paintings"] <= 0.5
    assert section["metrics"]["nonpaintings"]["count"] == 180
    assert set(section["metrics"]["nonpaintings"]["per_kind"]) == set(KINDS)
    companion = companion_file(calibrated_weights / "art_classifier.safetensors")
    assert companion.is_file()
    companion_card = json.loads(companion.with_suffix(".json").read_text())     # data with a card, as every weight
    assert companion_card["tensors"]["pooled.whitening"]["shape"][1] <= 512 and "non-commercial" in companion_card["licence"]
    # the threshold is the quantile of val distances measured with the stored centres and whitening
    from artlab.checkpoints import Checkpoint
    from artlab.training.calibrate import labelled_outputs

    checkpoint = Checkpoint.find(calibrated_weights, "art_classifier")
    space = calibration_from_card(card, __import__("safetensors.numpy").numpy.load_file(str(companion))).unsure.spaces[0]
    distances = space.distances(labelled_outputs(checkpoint, class_folders, "val", "cpu")["pooled"])
    assert space.max_distance == pytest.approx(np.quantile(distances, 0.96), rel=1e-3)


def test_both_engines_give_the_same_calibrated_answers_and_unsure_flags(calibrated_weights, monkeypatch):
    from artlab.inference.engine import OnnxArtModels
    from artlab.inference.image import ArtModels

    pictures = [p for _, p in make_nonpaintings(9, seed=5)] + [Image.new("RGB", (80, 60), (120, 90, 40))]
    onnx = OnnxArtModels(calibrated_weights, autoencoder=False).analyze(pictures, reconstruct=False)
    monkeypatch.setenv("ARTLAB_ENGINE", "torch")
    torch_models = ArtModels(calibrated_weights, "cpu", autoencoder=False)
    assert torch_models.engine == "torch" and torch_models.calibration.unsure is not None
    by_torch = torch_models.analyze(pictures, reconstruct=False)
    for a, b in zip(onnx, by_torch):
        assert a.unsure == b.unsure
        for head in ("style", "subject"):
            # (a random tiny model's classes are near ties: compare each class's probability)
            by_onnx, by_torch_head = dict(a.labels[head]), dict(b.labels[head])
            assert all(abs(by_onnx[name] - by_torch_head[name]) < 0.02 for name in by_onnx)
    # explain (Grad-CAM) goes another way through torch: the same answer
    explained = torch_models.analyze(pictures, reconstruct=False, explain=True)
    assert [a.unsure for a in explained] == [b.unsure for b in by_torch]


def test_a_picture_past_the_threshold_is_unsure_in_the_json_and_the_cli(calibrated_weights, tmp_path, capsys):
    from artlab.inference.engine import OnnxArtModels

    card_path = calibrated_weights / "art_classifier.json"
    card = json.loads(card_path.read_text())
    models = OnnxArtModels(calibrated_weights, autoencoder=False)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    raw = models.probabilities(_pixels(noise, models), calibrated=False, pooled=True)
    distance = models.calibration.unsure.spaces[0].distances(raw["pooled"])[0]
    for limit, expected in ((distance * 0.5, True), (distance * 2.0, False)):
        card["calibration"]["unsure"]["max_distance"]["pooled"] = float(limit)
        card_path.write_text(json.dumps(card))
        path = tmp_path / "noise.png"
        noise.save(path)
        assert main(["predict", str(path), "--weights", str(calibrated_weights), "--json", "--no-reconstruct"]) == 0
        record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert record["unsure"] is expected
        assert main(["predict", str(path), "--weights", str(calibrated_weights), "--no-reconstruct"]) == 0
        assert ("unsure:" in capsys.readouterr().out) is expected


def _pixels(picture, models):
    from artlab.inference.engine import pixels

    return pixels([picture], models.input_size)


def test_picture_json_always_says_whether_it_is_unsure():
    from artlab.inference.engine import Analysis

    record = picture_json(Analysis({"style": [("baroque", 0.9)]}, np.zeros(3)))
    assert record["unsure"] is False
    assert picture_json(Analysis({"style": [("baroque", 0.9)]}, np.zeros(3), unsure=True))["unsure"] is True


def test_evaluate_prints_the_calibration_error_and_the_unsure_share(calibrated_weights, class_folders, capsys):
    assert main(["evaluate", "--data", str(class_folders / "styles" / "val"), "--weights",
                 str(calibrated_weights)]) == 0
    printed = capsys.readouterr().out
    assert "expected calibration error" in printed and "unsure on" in printed and "chosen on: val" in printed


def test_evaluate_prints_the_selection_split_and_val_of_a_data_folder(tiny_weights, class_folders, capsys, tmp_path):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--data", str(class_folders), "--weights", str(tiny_weights), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "art_classifier on selection:" in printed and "art_classifier on val:" in printed
    report = json.loads(out.read_text())
    assert report["selection"]["heads"]["style"]["count"] == 7          # one of each style's 4 train images
    assert report["val"]["heads"]["style"]["count"] == 14


def test_the_artwork_tab_says_unsure_in_the_results_own_headers_and_a_notice():
    from artlab.ui.artwork_tab import render

    heads = {"style": [("baroque", 0.6), ("romanticism", 0.4)], "subject": [("portrait", 1.0)]}
    for lang, header, notice_words in (("en", "Style: unsure, a guess", "does not look like a painting"),
                                       ("zh", "风格：不确定，仅为猜测", "不像模型认识的绘画")):
        style, subject, _, _, _, message = render({"heads": heads, "unsure": True, "messages": ["unsure_picture"]}, lang)
        assert style["label"] == header and notice_words in str(message)
        sure_style, *_ = render({"heads": heads, "unsure": False, "messages": []}, lang)
        assert "unsure" not in sure_style["label"] and "不确定" not in sure_style["label"]
