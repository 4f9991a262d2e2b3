"""Fine-tuning: the engine on tiny generated class folders, zip safety, predict's JSON, ONNX parity, models."""

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, make_image

from artlab.inference.image import load_classifier
from artlab.store.registry import Registry
from artlab.store.uploads import UploadError, add_images, import_model, import_zip
from artlab.training.finetune import (
    FinetuneConfig,
    FinetuneError,
    finetune,
    scan_classes,
    stratified_split,
)

COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
FAST = dict(views=1, batch_size=8)


def make_classes(root: Path, classes=("red", "green"), per_class=6) -> Path:
    for i, name in enumerate(classes):
        for k in range(per_class):
            make_image(root / name / f"{k}.png", COLORS[name], pattern=i * 2 + k % 2)
    return root


def cli(capsys, *args) -> tuple[int, str, str]:
    """A command run in this process (fast): (exit status, stdout, stderr)."""
    from artlab.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args, env_extra=None):
    """A command run as a real subprocess, for the user-facing contracts."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "artlab", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def trained(tiny_weights, tmp_path_factory):
    """One small fine-tuned model shared by the read-only tests: (data folder, model folder, card)."""
    root = tmp_path_factory.mktemp("ft")
    data = make_classes(root / "data", ("red", "green", "blue"), per_class=6)
    card = finetune(data, root / "model", base=tiny_weights, config=FinetuneConfig(epochs=25, **FAST))
    return data, root / "model", card


# ---------------------------------------------------------------- engine

def test_finetune_learns_and_writes_a_complete_model(trained):
    data, out, card = trained
    history = [r for r in card["training"]["history"] if r["stage"] == "head"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert card["classes"] == ["blue", "green", "red"]
    assert set(card["metrics"]["val"]["per_class"]) == {"blue", "green", "red"}
    assert len(card["metrics"]["val"]["confusion"]["matrix"]) == 3
    assert card["data"]["per_class"] == {"blue": 6, "green": 6, "red": 6}
    # stratified: every class has held-out images and the split adds up
    assert all(n >= 1 for n in card["data"]["val_per_class"].values())
    assert sum(card["data"]["val_per_class"].values()) == card["metrics"]["val"]["count"]
    assert card["command"]
    assert sorted(p.name for p in out.iterdir()) == ["art_classifier.json", "art_classifier.safetensors"]
    model, loaded_card = load_classifier(out, "cpu")
    # the frozen fast path keeps the base heads (still valid) next to the new one
    assert set(model.heads) == {"style", "subject", "labels"}
    assert loaded_card["labels"]["labels"] == card["classes"]


def test_stratified_split_holds_out_every_class():
    labels = torch.tensor([0] * 5 + [1] * 20 + [2] * 9)
    train, val = stratified_split(labels, 0.2, seed=0)
    assert set(train.tolist()).isdisjoint(val.tolist()) and len(train) + len(val) == len(labels)
    assert [int((labels[val] == c).sum()) for c in range(3)] == [1, 4, 2]


def test_early_stopping_ends_before_the_epoch_budget(tiny_weights, tmp_path):
    data = make_classes(tmp_path / "data")
    card = finetune(data, tmp_path / "out", base=tiny_weights,
                    config=FinetuneConfig(epochs=400, patience=3, lr=0.05, **FAST))
    assert card["training"]["early_stopped"]
    assert len(card["training"]["history"]) < 400


def test_stop_keeps_the_best_model_so_far(tiny_weights, tmp_path):
    data = make_classes(tmp_path / "data")
    stop = threading.Event()

    def on_epoch(record):
        if record["epoch"] == 2:
            stop.set()          # what the UI's Stop button does

    card = finetune(data, tmp_path / "out", base=tiny_weights, should_stop=stop, on_epoch=on_epoch,
                    config=FinetuneConfig(epochs=50, **FAST))
    assert card["training"]["stopped_by_user"]
    assert len(card["training"]["history"]) == 2
    model, _ = load_classifier(tmp_path / "out", "cpu")      # a usable model was written
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64))["labels"].shape == (1, 2)


def test_stop_before_any_epoch_writes_nothing(tiny_weights, tmp_path):
    data = make_classes(tmp_path / "data")
    with pytest.raises(FinetuneError, match="nothing was written"):
        finetune(data, tmp_path / "out", base=tiny_weights, should_stop=lambda: True, config=FinetuneConfig(**FAST))
    assert not (tmp_path / "out").exists()


def test_a_crash_while_writing_leaves_the_old_model_whole(trained, tiny_weights, tmp_path, monkeypatch):
    data, model_dir, _ = trained
    out = tmp_path / "out"
    shutil.copytree(model_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(model, path, card):
        Path(path).with_suffix(".safetensors").write_bytes(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr("artlab.training.finetune.save_checkpoint", crash)
    with pytest.raises(OSError):
        finetune(data, out, base=tiny_weights, config=FinetuneConfig(epochs=2, **FAST))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]          # no temporary folder left behind
    with pytest.raises(OSError):
        finetune(data, tmp_path / "new", base=tiny_weights, config=FinetuneConfig(epochs=2, **FAST))
    assert not (tmp_path / "new").exists()


def test_deeper_finetune_drops_the_stale_base_heads(tiny_weights, tmp_path):
    data = make_classes(tmp_path / "data")
    card = finetune(data, tmp_path / "out", base=tiny_weights,
                    config=FinetuneConfig(epochs=3, depth=1, deep_epochs=1, **FAST))
    assert card["training"]["depth"] == "last 1 blocks"
    assert {r["stage"] for r in card["training"]["history"]} == {"head", "deep"}
    assert list(card["labels"]) == ["labels"]
    model, _ = load_classifier(tmp_path / "out", "cpu")
    assert set(model.heads) == {"labels"}


# ---------------------------------------------------------------- the few-shot head (issue 15)

def _blobs(n_per_class: int, seed: int, dims=32, classes=3):
    """Well-separated synthetic neck vectors: class c sits 4 units out along dimension c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.randn(len(y), dims, generator=g)
    x[torch.arange(len(y)), y] += 4.0
    return x, y


def test_prototype_start_classifies_separated_classes_without_training():
    from torch import nn

    from artlab.training.fewshot import train_fewshot

    x, y = _blobs(8, seed=0)
    views = torch.stack([x, x + 0.05 * torch.randn_like(x)])          # plain and "mirror"
    head = train_fewshot(views, y, ["a", "b", "c"], nn.ModuleDict(), {}, FinetuneConfig(epochs=0), lambda: False, None)
    assert head.epoch == 0 and head.start == "prototypes"
    test_x, test_y = _blobs(50, seed=1)
    assert ((test_x @ head.weight.T + head.bias).argmax(1) == test_y).float().mean() >= 0.95
    # a head from noise (today's start) is near chance on the same vectors
    noise = nn.Linear(32, 3)
    assert (noise(test_x).argmax(1) == test_y).float().mean() < 0.8


def test_the_head_on_base_logits_folds_exactly_onto_the_neck():
    from torch import nn

    from artlab.training.fewshot import Features

    torch.manual_seed(0)
    heads = nn.ModuleDict({"style": nn.Linear(16, 4), "subject": nn.Linear(16, 3)})
    neck = torch.randn(40, 16) * torch.linspace(0.1, 3, 16)
    features = Features.fit(heads, {"style": list("abcd"), "subject": list("xyz")}, neck)
    weight, bias = torch.randn(5, 16 + 7), torch.randn(5)
    on_neck, const = features.fold(weight, bias)
    assert torch.allclose(features(neck) @ weight.T + bias, neck @ on_neck.T + const, atol=1e-4)


def test_class_names_match_base_labels_loosely():
    from artlab.training.fewshot import match_base_labels, zero_shot_head

    base = {"style": ["art_nouveau", "baroque"], "subject": ["portrait"], "labels": ["mine"]}
    matches = match_base_labels(["Art Nouveau", "baroque"], base)
    assert matches == [("style", 0), ("style", 1)] and zero_shot_head(matches) == "style"
    mixed = match_base_labels(["baroque", "portrait", "mine"], base)
    assert mixed == [("style", 1), ("subject", 0), None] and zero_shot_head(mixed) is None


def test_matched_class_names_start_from_the_zero_shot_answer(tiny_weights, tmp_path):
    """With no training, a model for three of the base's styles answers as the base's style head
    restricted to them (a head from noise does not)."""
    from artlab.labels import STYLES

    names = STYLES[:3]
    for i, name in enumerate(names):
        for k in range(6):
            make_image(tmp_path / "data" / name / f"{k}.png", list(COLORS.values())[i], pattern=i * 2 + k % 2)
    card = finetune(tmp_path / "data", tmp_path / "out", base=tiny_weights, config=FinetuneConfig(epochs=0, **FAST))
    assert card["training"]["head_start"] == "zero-shot (style head)" and card["training"]["head_epochs_kept"] == 0
    model, loaded = load_classifier(tmp_path / "out", "cpu")
    columns = [loaded["labels"]["style"].index(name) for name in loaded["labels"]["labels"]]
    with torch.no_grad():
        out = model(torch.rand(8, 3, 64, 64) * 2 - 1)
    assert torch.allclose(out["labels"].softmax(1), out["style"][:, columns].softmax(1), atol=2e-3)


def test_training_leaves_a_poor_zero_shot_answer_when_held_out_images_say_so(tiny_weights, tmp_path):
    """The tiny base's style head is random: cross-validation finds training clearly better, and keeps it."""
    from artlab.labels import STYLES

    for i, name in enumerate(STYLES[:3]):
        for k in range(8):
            make_image(tmp_path / "data" / name / f"{k}.png", list(COLORS.values())[i], pattern=i * 2 + k % 2)
    card = finetune(tmp_path / "data", tmp_path / "out", base=tiny_weights, config=FinetuneConfig(epochs=40, **FAST))
    training = card["training"]
    assert training["head_start"] == "zero-shot (style head)" and training["head_epochs_kept"] > 0
    kept = next(r for r in training["history"] if r["epoch"] == training["head_epochs_kept"])
    assert card["metrics"]["val"]["accuracy"] == kept["val_accuracy"] >= 0.9


def test_clearly_better_needs_more_than_noise():
    from artlab.training.fewshot import clearly_better

    before = torch.tensor([True] * 80 + [False] * 10)
    same = before.clone()
    assert not clearly_better(same, before)
    one_more = before.clone()
    one_more[80] = True
    assert not clearly_better(one_more, before)                    # one image: within the noise
    six_more = before.clone()
    six_more[80:86] = True
    assert clearly_better(six_more, before)


def test_cross_validation_keeps_an_epoch_within_range(trained):
    _, _, card = trained
    training = card["training"]
    kept, history = training["head_epochs_kept"], training["history"]
    assert training["recipe"] == "fewshot" and training["validation"] == "cross-validation"
    assert training["cross_validation_folds"] == 5                          # 6 images a class: 5 folds
    assert 0 <= kept <= len(history) <= 25
    if kept:   # the epoch kept is the one whose out-of-fold score was best
        assert history[kept - 1]["score"] == max(r["score"] for r in history)
    # every image is held out once: the reported metrics cover all 18
    assert card["metrics"]["val"]["count"] == 18 == sum(card["data"]["val_per_class"].values())


@pytest.mark.parametrize("recipe", ["fewshot", "linear"])
def test_finetuned_model_answers_alike_through_torch_and_onnx(tiny_weights, tmp_path, monkeypatch, recipe):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -r requirements-dev.txt)")
    from artlab.images import load_image
    from artlab.inference.image import ArtModels

    data = make_classes(tmp_path / "data", ("red", "green", "blue"))
    finetune(data, tmp_path / "out", base=tiny_weights, config=FinetuneConfig(epochs=5, recipe=recipe, **FAST))
    pictures = [load_image(p) for p in sorted(data.rglob("*.png"))[:4]]
    answers = {}
    monkeypatch.setenv("ARTLAB_PRECISION", "fp32")
    for engine in ("torch", "onnx"):
        monkeypatch.setenv("ARTLAB_ENGINE", engine)
        lab = ArtModels(tmp_path / "out", "cpu", autoencoder=False)
        assert lab.engine == engine and lab.labels["labels"] == ("blue", "green", "red")
        answers[engine] = [dict(a.labels["labels"]) for a in lab.analyze(pictures, reconstruct=False)]
    for want, got in zip(answers["torch"], answers["onnx"]):
        assert max(abs(want[name] - got[name]) for name in want) < 0.02


# ---------------------------------------------------------------- bad data

def test_auto_depth_goes_deeper_only_with_enough_data_on_a_gpu():
    from artlab.training.finetune import resolve_depth

    few, many = {"a": 10, "b": 30}, {"a": 24, "b": 24}      # many: the 3 x 30 job after its held-out split
    assert resolve_depth("auto", few, 16, torch.device("cuda")) == 0
    assert resolve_depth("auto", many, 16, torch.device("cuda")) == 2
    assert resolve_depth("auto", many, 16, torch.device("cpu")) == 0
    assert resolve_depth("3", few, 16) == 3 and resolve_depth("head", many, 16) == 0
    with pytest.raises(FinetuneError, match="between 0 and 16"):
        resolve_depth("17", few, 16)


def test_one_class_is_refused(tmp_path):
    make_classes(tmp_path, ("red",))
    with pytest.raises(FinetuneError, match="at least 2"):
        scan_classes(tmp_path)


def test_a_class_with_one_image_is_refused_by_name(tmp_path):
    make_classes(tmp_path, ("red", "green"))
    for extra in list((tmp_path / "green").iterdir())[1:]:
        extra.unlink()
    with pytest.raises(FinetuneError, match=r"too few in: green \(1\)"):
        scan_classes(tmp_path)


def test_too_many_images_are_refused_before_decoding(tmp_path):
    make_classes(tmp_path, ("red", "green"), per_class=6)
    with pytest.raises(FinetuneError, match="12 images, over the cap of 10"):
        scan_classes(tmp_path, max_images=10)


def test_unreadable_files_are_skipped_and_listed(tiny_weights, tmp_path):
    data = make_classes(tmp_path / "data")
    (data / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    (data / "notes.txt").write_text("a stray file")
    card = finetune(data, tmp_path / "out", base=tiny_weights, config=FinetuneConfig(epochs=2, **FAST))
    skipped = " ".join(card["data"]["skipped"])
    assert "broken.jpg" in skipped and "notes.txt" in skipped
    assert card["data"]["per_class"]["red"] == 6


def test_cli_reports_bad_data_in_one_line(tiny_weights, tmp_path, capsys):
    make_classes(tmp_path / "data", ("red",))
    code, _, err = cli(capsys, "finetune", tmp_path / "data", "--out", tmp_path / "out", "--base", tiny_weights)
    assert code == 2
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- zips and uploads

def _zip(path: Path, entries: dict, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


@pytest.fixture()
def png_bytes(tmp_path) -> bytes:
    return make_image(tmp_path / "one.png").read_bytes()


def test_zip_of_class_folders_is_imported_and_non_images_listed(tmp_path, png_bytes):
    archive = _zip(tmp_path / "a.zip", {"mine/cats/1.png": png_bytes, "mine/cats/2.PNG": png_bytes,
                                        "mine/dogs/1.png": png_bytes, "mine/dogs/readme.txt": b"hi",
                                        "mine/loose.png": png_bytes, "__MACOSX/mine/._1.png": b"junk"})
    result = import_zip(archive, tmp_path / "out")
    assert result.counts() == {"cats": 2, "dogs": 1}
    assert any("readme.txt: not an image" in s for s in result.skipped)
    assert any("loose.png: not in a class folder" in s for s in result.skipped)
    assert all(p.is_relative_to(tmp_path / "out") for files in result.classes.values() for p in files)


@pytest.mark.parametrize("entries, symlink, message", [
    ({"cats/../../evil.png": b"x"}, None, "zip-slip"),
    ({"/etc/cats/evil.png": b"x"}, None, "absolute path"),
    ({"C:/cats/evil.png": b"x"}, None, "absolute path"),
    ({"cats/1.png": b"x"}, "cats/link.png", "symbolic link"),
    ({"/".join(["d"] * 9) + "/x.png": b"x"}, None, "nested"),
])
def test_unsafe_zips_are_refused_whole(tmp_path, entries, symlink, message):
    archive = _zip(tmp_path / "bad.zip", entries, symlink)
    with pytest.raises(UploadError, match=message):
        import_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.png").exists()


def test_zip_bombs_are_refused(tmp_path, png_bytes):
    bomb = _zip(tmp_path / "bomb.zip", {"cats/big.png": b"\0" * 3_000_000})
    assert bomb.stat().st_size < 50_000
    with pytest.raises(UploadError, match="zip bomb"):
        import_zip(bomb, tmp_path / "out", max_bytes=1_000_000)
    many = _zip(tmp_path / "many.zip", {f"cats/{i}.png": png_bytes for i in range(5)})
    with pytest.raises(UploadError, match="5 files, over the cap of 3"):
        import_zip(many, tmp_path / "out", max_files=3)
    with pytest.raises(UploadError, match="not a readable zip"):
        import_zip(tmp_path / "one.png", tmp_path / "out")


def test_add_images_keeps_only_readable_images(tmp_path):
    good = make_image(tmp_path / "in" / "a.jpg")
    bad = tmp_path / "in" / "b.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    result = add_images([good, bad], tmp_path / "classes" / "cats")
    assert result.counts() == {"cats": 1} and len(result.skipped) == 1 and "b.jpg" in result.skipped[0]


def test_uploaded_pickle_models_are_refused(trained, tmp_path):
    _, model_dir, _ = trained
    pickle_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pickle_file)
    with pytest.raises(UploadError, match="pickle"):
        import_model(pickle_file, tmp_path / "m1")
    disguised = tmp_path / "model.zip"
    disguised.write_bytes(b"\x80\x04" + pickle_file.read_bytes()[2:])
    with pytest.raises(UploadError, match="pickle"):
        import_model(disguised, tmp_path / "m2")
    inside = _zip(tmp_path / "inside.zip", {"art_classifier.json": b"{}", "weights.pth": pickle_file.read_bytes()})
    with pytest.raises(UploadError, match="pickle"):
        import_model(inside, tmp_path / "m3")
    fake = _zip(tmp_path / "fake.zip", {"art_classifier.json": (model_dir / "art_classifier.json").read_bytes(),
                                        "art_classifier.safetensors": pickle_file.read_bytes()})
    with pytest.raises(UploadError, match="not a usable ArtLab model"):
        import_model(fake, tmp_path / "m4")
    good = _zip(tmp_path / "good.zip", {p.name: p.read_bytes() for p in model_dir.iterdir()})
    assert import_model(good, tmp_path / "m5")["classes"] == ["blue", "green", "red"]


# ---------------------------------------------------------------- predict, export, models

def test_predict_with_finetuned_weights_answers_with_the_new_classes(trained, tiny_weights):
    data, out, _ = trained
    images = [data / "red" / "0.png", data / "blue" / "1.png"]
    result = run_cli("predict", "--weights", out, "--json", *images, env_extra={"ARTLAB_WEIGHTS": str(tiny_weights)})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in images]
    for line in lines:
        names = [name for name, _ in line["labels"]]
        probs = [p for _, p in line["labels"]]
        assert sorted(names) == ["blue", "green", "red"]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
        assert "style" in line and "subject" in line and "psnr" in line


def test_onnx_export_matches_pytorch(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -r requirements-dev.txt)")
    from artlab.images import letterbox, load_image, normalize, to_uint8_tensor
    from artlab.inference.export import export_onnx, onnx_parity

    data, out, _ = trained
    info = export_onnx(out, tmp_path / "model.onnx")
    assert info["heads"] == ["style", "subject", "labels"]
    images = [to_uint8_tensor(letterbox(load_image(p), info["input_size"])) for p in sorted(data.rglob("*.png"))[:5]]
    assert onnx_parity(out, tmp_path / "model.onnx", normalize(torch.stack(images))) <= 1e-4
    code, stdout, _ = cli(capsys, "export", "--weights", out, "--onnx", tmp_path / "cli.onnx",
                          "--check", data / "red" / "0.png")
    assert code == 0 and "largest difference" in stdout


def test_models_list_activate_rollback_delete(trained, tmp_path, capsys):
    _, model_dir, _ = trained
    registry = Registry(tmp_path / "models")
    for _ in range(2):
        shutil.copytree(model_dir, registry.next_path("colours"))
    shutil.copytree(model_dir, registry.next_path("other set"))
    assert [e["key"] for e in registry.entries()] == ["colours/v1", "colours/v2", "other_set/v1"]
    assert registry.active_path() is None
    assert registry.activate("colours") == "colours/v2"
    assert registry.activate("other_set/v1") == "other_set/v1"
    assert registry.active_path() == registry.root / "other_set" / "v1"
    assert registry.rollback() == "colours/v2"
    assert registry.rollback() is None           # back to the shipped model
    registry.activate("colours/v1")
    registry.delete("colours/v1")
    assert registry.active() is None and [e["key"] for e in registry.entries()] == ["colours/v2", "other_set/v1"]
    with pytest.raises(Exception, match="no version"):
        registry.resolve("colours/v9")

    code, stdout, _ = cli(capsys, "models", "activate", "colours", "--models", registry.root)
    assert code == 0 and "colours/v2" in stdout
    listing = json.loads(cli(capsys, "models", "--models", registry.root, "--json")[1])
    assert listing["active"] == "colours/v2"
    entry = next(e for e in listing["entries"] if e["key"] == "colours/v2")
    assert entry["active"] and entry["classes"] == ["blue", "green", "red"] and entry["val_accuracy"] is not None
    assert "val acc" in cli(capsys, "models", "--models", registry.root)[1]
    assert cli(capsys, "models", "delete", "colours", "--models", registry.root)[0] == 2
    assert cli(capsys, "models", "rollback", "--models", registry.root)[0] == 0
    assert registry.active() is None

    good = _zip(tmp_path / "shared.zip", {p.name: p.read_bytes() for p in model_dir.iterdir()})
    assert cli(capsys, "models", "import", good, "--models", registry.root)[1].strip() == "imported: shared/v1"
    torch.save({"w": torch.zeros(1)}, tmp_path / "evil.pt")
    code, _, err = cli(capsys, "models", "import", tmp_path / "evil.pt", "--models", registry.root)
    assert code == 2 and "pickle" in err and not (registry.root / "evil").exists()


def test_finetune_command_without_out_adds_a_version_to_the_models_directory(tiny_weights, tmp_path, capsys):
    data = make_classes(tmp_path / "my colours")
    args = ["finetune", data, "--base", tiny_weights, "--models", tmp_path / "models", "--epochs", "2",
            "--views", "1", "--activate"]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert "held-out accuracy" in out and "(active as my_colours/v1)" in out
    assert cli(capsys, *args[:-1], "--json", "--recipe", "linear")[0] == 0
    registry = Registry(tmp_path / "models")
    assert [e["key"] for e in registry.entries()] == ["my_colours/v1", "my_colours/v2"]
    assert registry.active() == "my_colours/v1"
    recipes = [json.loads((registry.root / "my_colours" / v / "art_classifier.json").read_text())["training"]["recipe"]
               for v in ("v1", "v2")]
    assert recipes == ["fewshot", "linear"]
