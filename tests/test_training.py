"""The one training loop and the image recipes, on tiny data the tests make."""

import json

import torch

from artlab.checkpoints import read_card
from artlab.cli import main
from artlab.inference.image import load_autoencoder, load_classifier
from artlab.training.image import train_autoencoder, train_classifier
from artlab.training.loop import fit


def _toy_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(8, 2)

    def batches(epoch):
        for i in range(0, 64, 16):
            yield x[i:i + 16], y[i:i + 16]

    def step(model, batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    return model, batches, step


def test_fit_lowers_the_loss_and_keeps_the_best_epoch():
    model, batches, step = _toy_problem()
    scores = iter([0.1, 0.9, 0.2, 0.3])  # best at epoch 2
    snapshots = []

    def evaluate(m):
        snapshots.append(m.weight.detach().clone())
        return {"score": next(scores)}

    result = fit(model, batches, step, epochs=4, steps_per_epoch=4, device=torch.device("cpu"),
                 param_groups=[{"params": model.parameters(), "lr": 0.1}], evaluate=evaluate, show_progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_epoch == 2 and torch.equal(model.weight, snapshots[1])


def test_fit_stops_at_the_next_step_when_asked():
    model, batches, step = _toy_problem()
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 6  # stop during the second epoch

    result = fit(model, batches, step, epochs=10, steps_per_epoch=4, device=torch.device("cpu"),
                 param_groups=[{"params": model.parameters(), "lr": 0.1}], should_stop=should_stop,
                 show_progress=False)
    assert result.stopped and len(result.history) == 2


def test_early_stopping():
    model, batches, step = _toy_problem()
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    result = fit(model, batches, step, epochs=6, steps_per_epoch=4, device=torch.device("cpu"),
                 param_groups=[{"params": model.parameters(), "lr": 0.1}], evaluate=lambda m: {"score": next(scores)},
                 patience=2, show_progress=False)
    assert result.early_stopped and len(result.history) == 3


def test_tiny_classifier_training_lowers_loss_and_round_trips(class_folders, tmp_path):
    card = train_classifier(class_folders, tmp_path, epochs=2, batch_size=16, lr=3e-3, image_size=48, subject_repeat=1,
                            device="cpu", command="test")
    losses = [record["train_loss"] for record in card["training"]["history"]]
    assert losses[-1] < losses[0]
    saved = read_card(tmp_path / "art_classifier")
    assert saved["labels"]["style"][0] == "art_nouveau" and "per_class" in saved["metrics"]["val"]["style"]
    assert "non-commercial" in saved["licence"]
    # save -> load gives identical outputs (the fp16 storage is what both sides use)
    model, _ = load_classifier(tmp_path, "cpu")
    again, _ = load_classifier(tmp_path, "cpu")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(model(x)["style"], again(x)["style"])


def test_save_load_round_trip_is_exact_for_the_stored_weights(class_folders, tmp_path):
    from artlab.checkpoints import save_checkpoint
    from artlab.models.autoencoder import ArtAutoencoder

    model = ArtAutoencoder(16).eval().half().float()  # values representable in fp16
    save_checkpoint(model, tmp_path / "art_autoencoder", {"config": {"width": 16}, "input_size": 128})
    loaded, _ = load_autoencoder(tmp_path, "cpu")
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


def test_tiny_autoencoder_training(class_folders, tmp_path):
    card = train_autoencoder(class_folders, tmp_path, epochs=4, batch_size=8, width=16, device="cpu")
    losses = [record["train_loss"] for record in card["training"]["history"]]
    assert losses[-1] < losses[0]
    assert card["metrics"]["val"]["psnr_db"] > 0


def test_evaluate_command_prints_and_writes_json(class_folders, tiny_weights, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--data", str(class_folders / "styles" / "val"), "--weights", str(tiny_weights),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "style: top-1 accuracy" in printed and "confusion" in printed
    report = json.loads(out.read_text())
    assert report["heads"]["style"]["count"] == 14 and len(report["heads"]["style"]["confusion"]["matrix"]) == 7
    card_size = report["input_size"]
    assert main(["evaluate", "--data", str(class_folders / "styles" / "val"), "--weights", str(tiny_weights),
                 "--size", str(card_size + 32), "--json", str(out)]) == 0
    assert f"input {card_size + 32} px" in capsys.readouterr().out
    assert json.loads(out.read_text())["input_size"] == card_size + 32


def test_time_budget_ends_training_and_its_schedule():
    import time

    model, batches, step = _toy_problem()

    def slow_batches(epoch):
        for batch in batches(epoch):
            time.sleep(0.02)
            yield batch

    result = fit(model, slow_batches, step, epochs=1000, steps_per_epoch=4, device=torch.device("cpu"),
                 param_groups=[{"params": model.parameters(), "lr": 0.1}], time_budget_s=0.3,
                 warmup_epochs=0.25, show_progress=False)
    assert result.out_of_time and not result.stopped
    assert 1 <= len(result.history) < 20
    assert result.history[-1]["lr"] < 0.05  # the cosine had run most of its course by the deadline


def test_the_selection_split_is_carved_from_train_the_same_way_every_time(class_folders, tmp_path):
    from artlab.data.folders import (
        SELECTION_FRACTION,
        load_art_data,
        selection_files,
        train_part,
    )

    fit, selection = load_art_data(class_folders, "fit"), load_art_data(class_folders, "selection")
    train = load_art_data(class_folders, "train")
    assert set(fit.paths).isdisjoint(selection.paths) and set(fit.paths) | set(selection.paths) == set(train.paths)
    # every class of every head is in both parts, even with 4 images a class
    for head in ("style", "subject"):
        assert set(selection.labels[head][selection.labels[head] >= 0].tolist()) == set(range(7 if head == "style" else 5))
    assert load_art_data(class_folders, "selection").paths == selection.paths
    # on a large class the share is close to the fraction, and fixed by the file's class and name alone
    files = [tmp_path / "baroque" / f"{k}.jpg" for k in range(4000)]
    chosen = selection_files(files)
    assert abs(len(chosen) / len(files) - SELECTION_FRACTION) < 0.02
    moved = [tmp_path / "elsewhere" / "baroque" / f.name for f in files]
    assert {f.name for f in selection_files(moved)} == {f.name for f in chosen}
    assert len(train_part(files, "fit")) + len(train_part(files, "selection")) == len(files)


def test_a_trained_classifier_card_says_which_split_chose_what(class_folders, tmp_path):
    card = train_classifier(class_folders, tmp_path, epochs=1, batch_size=16, image_size=48, subject_repeat=1,
                            device="cpu", command="test")
    assert card["chosen_on"] == {"best_epoch": "selection", "input_size": "selection"}
    assert {"selection", "val"} <= set(card["metrics"])
    assert card["metrics"]["val"]["style"]["count"] == 14           # all of val, measured once
    assert "selection_style" in card["training"]["history"][0] and "val_style" not in card["training"]["history"][0]
