"""Device discipline without a GPU: every code path that runs models is run on a pretend CUDA
device (tests/virtual_cuda.py), where any op that mixes cuda and CPU tensors raises, as it
would on a real GPU. Each test runs the real function end to end, with real numbers.
"""

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image
from torch import nn
from virtual_cuda import CudaOnCpu, DeviceMismatch, virtual_cuda

from artlab.bulk import bulk_index
from artlab.images import letterbox, list_images, to_uint8_tensor
from artlab.indexing import index_paths
from artlab.inference.image import ArtModels
from artlab.inference.text import TextModels
from artlab.store.gallery import Gallery
from artlab.training.evaluate import evaluate_folder, evaluate_text
from artlab.training.finetune import FinetuneConfig, finetune
from artlab.training.image import train_autoencoder, train_classifier
from artlab.training.soup import soup_classifier
from artlab.training.text import train_autoencoder as train_text_autoencoder
from artlab.training.text import train_classifier as train_text_classifier

pytestmark = [pytest.mark.usefixtures("one_thread"),
              # torch.autocast("cuda") finds no real GPU here and runs in fp32: said once is enough
              pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")]

COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def make_classes(root, classes=("red", "green", "blue"), per_class=6):
    for i, name in enumerate(classes):
        for k in range(per_class):
            make_image(root / name / f"{k}.png", COLORS[name], pattern=i * 2 + k % 2)
    return root


@pytest.fixture(scope="module")
def class_data(tmp_path_factory):
    return make_classes(tmp_path_factory.mktemp("classes"))


# ---------------------------------------------------------------- the harness itself

def test_the_pretend_gpu_catches_mixing_and_keeps_values():
    with virtual_cuda():
        layer = nn.Linear(4, 3)
        reference = layer(torch.ones(2, 4))
        layer.to("cuda")
        assert layer.weight.device.type == "cuda" and isinstance(layer.weight, CudaOnCpu)
        with pytest.raises(DeviceMismatch):
            layer(torch.ones(2, 4))                         # a CPU batch into a cuda model
        with pytest.raises(DeviceMismatch):
            torch.cat([torch.ones(2, device="cuda"), torch.ones(2)])
        out = layer(torch.ones(2, 4, device="cuda"))
        assert out.device.type == "cuda" and torch.allclose(out.cpu(), reference)
        with pytest.raises(TypeError):
            out.numpy()                                      # a GPU tensor must come to the host first
        assert (out * torch.tensor(2.0)).device.type == "cuda"   # a 0-dim CPU tensor is a scalar: allowed


# ---------------------------------------------------------------- fine-tuning

def test_head_finetune_on_the_gpu(tiny_weights, class_data, tmp_path):
    with virtual_cuda():
        card = finetune(class_data, tmp_path / "out", base=tiny_weights,
                        config=FinetuneConfig(epochs=3, views=1, batch_size=8, device="cuda"))
    assert card["training"]["depth"] == "head"
    # the few-shot head is cross-validated: every one of the 18 images is held out once
    assert card["metrics"]["val"]["count"] == 18 and (tmp_path / "out" / "art_classifier.safetensors").exists()


def test_deep_finetune_on_the_gpu(tiny_weights, class_data, tmp_path):
    with virtual_cuda():
        card = finetune(class_data, tmp_path / "out", base=tiny_weights,
                        config=FinetuneConfig(epochs=2, depth=1, deep_epochs=1, views=1, batch_size=8,
                                              device="cuda"))
    assert {r["stage"] for r in card["training"]["history"]} == {"head", "deep"}


def test_finetune_on_the_gpu_gives_the_cpu_answer(tiny_weights, class_data, tmp_path):
    """The pretend GPU computes real numbers: the same seed gives the same model on both."""
    config = dict(epochs=3, views=1, batch_size=8, depth="head")
    on_cpu = finetune(class_data, tmp_path / "cpu", base=tiny_weights, config=FinetuneConfig(**config, device="cpu"))
    with virtual_cuda():
        on_gpu = finetune(class_data, tmp_path / "gpu", base=tiny_weights,
                          config=FinetuneConfig(**config, device="cuda"))
    losses = [[r["train_loss"] for r in card["training"]["history"]] for card in (on_cpu, on_gpu)]
    assert np.allclose(losses[0], losses[1], rtol=1e-4)
    assert on_cpu["metrics"]["val"]["confusion"] == on_gpu["metrics"]["val"]["confusion"]


# ---------------------------------------------------------------- inference, Grad-CAM, autoencoder

def _pictures(tmp_path, n=3):
    return [Image.open(make_image(tmp_path / f"{i}.png", (40 * i, 90, 200 - 30 * i), size=(80, 50), pattern=i))
            for i in range(n)]


def test_analysis_grad_cam_and_reconstruction_on_the_gpu(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTLAB_PRECISION", "fp32")      # the same arithmetic on both sides
    pictures = _pictures(tmp_path)
    want = ArtModels(tiny_weights, "cpu").analyze(pictures, explain=True)
    with virtual_cuda():
        models = ArtModels(tiny_weights, "cuda")
        got = models.analyze(pictures, explain=True)
        frames = models.morph(pictures[0], pictures[1], 3)
        batch = torch.stack([to_uint8_tensor(letterbox(p, models.input_size)) for p in pictures])
        tensors = models.label_tensors(batch.to("cuda").float().div(127.5).sub(1))
    assert len(frames) == 3 and frames[0].size == (128, 128)
    for a, b, c in zip(want, got, tensors):
        assert a.labels["style"][0][0] == b.labels["style"][0][0] == c.labels["style"][0][0]
        assert torch.allclose(a.embedding, b.embedding, atol=1e-5) and b.embedding.device.type == "cpu"
        assert abs(a.psnr - b.psnr) < 1e-3
        assert np.abs(np.asarray(a.heatmap, int) - np.asarray(b.heatmap, int)).max() <= 1


def test_evaluate_on_the_gpu(tiny_weights, class_folders):
    want = evaluate_folder(class_folders / "styles" / "val", tiny_weights, device="cpu")
    with virtual_cuda():
        got = evaluate_folder(class_folders / "styles" / "val", tiny_weights, device="cuda")
    assert got["heads"]["style"]["count"] == want["heads"]["style"]["count"] > 0


def test_soup_on_the_gpu(tiny_weights, class_folders, tmp_path):
    with virtual_cuda():
        card = soup_classifier(tiny_weights, tiny_weights, class_folders, tmp_path / "soup", calibration_images=8,
                               device="cuda")
    assert card["metrics"]["val"]["style"]["count"] > 0


def test_image_training_on_the_gpu(class_folders, tmp_path, monkeypatch):
    monkeypatch.setattr("artlab.training.image.load_imagenet_weights", lambda backbone: None)  # no download
    with virtual_cuda():
        classifier = train_classifier(class_folders, tmp_path, epochs=1, batch_size=8, image_size=32, limit=1,
                                      device="cuda")
        autoencoder = train_autoencoder(class_folders, tmp_path, epochs=1, batch_size=8, width=8, limit=1,
                                        device="cuda")
    assert classifier["training"]["epochs_run"] == 1 and autoencoder["metrics"]["val"]["psnr_db"] > 0



def test_autoencoder_finetune_with_the_perceptual_loss_on_the_gpu(class_folders, tiny_weights, tmp_path):
    """The frozen Lite0 (real ImageNet weights) moves to the model's device with it, and the Create
    measures run there too."""
    from artlab.inference.image import load_autoencoder
    from artlab.training.perceptual import feature_distance, frechet_distance, frozen_lite0, pooled_features

    with virtual_cuda():
        card = train_autoencoder(class_folders, tmp_path, epochs=1, batch_size=8, limit=1, perceptual_weight=0.5,
                                 init=tiny_weights, device="cuda")
        net = frozen_lite0("cuda")
        model, _ = load_autoencoder(tmp_path, "cuda")
        x = torch.rand(6, 3, 128, 128, device="cuda") * 2 - 1
        distance = feature_distance(net, model(x), x)
        with torch.no_grad():
            features = pooled_features(net, x, size=64)
    assert card["training"]["history"][0]["selection_feature_distance"] > 0
    assert distance.device.type == "cuda" and distance.shape == (6,)
    assert features.device.type == "cpu" and frechet_distance(features, features + 1) > 0

# ---------------------------------------------------------------- text models

def test_text_training_and_inference_on_the_gpu(tmp_path):
    from test_text import write_text_data

    data = write_text_data(tmp_path / "text", titles=60, descriptions=10)
    with virtual_cuda():
        train_text_classifier(data, tmp_path / "w", epochs=1, batch_size=16, embed_dim=8, hidden=8, device="cuda",
                              show_progress=False)
        train_text_autoencoder(data, tmp_path / "w", epochs=1, batch_size=16, embed_dim=8, hidden=8, code_dim=8,
                               decoder_hidden=8, slots=2, device="cuda", show_progress=False)
        answers = TextModels(tmp_path / "w", device="cuda").analyze(["Portrait of a woman", "river at dusk"])
        report = evaluate_text(data, tmp_path / "w", baseline=False, device="cuda")
    assert all("subject" in a and "reconstruction" in a for a in answers)
    assert report


# ---------------------------------------------------------------- the bulk indexer

def test_bulk_index_on_the_gpu_gives_the_apps_answers(tiny_weights, tmp_path, monkeypatch):
    """nvJPEG stands in as libjpeg-turbo; staging, letterboxing and thumbnails run on the pretend GPU.
    Against the app's own path (indexing.index_paths, Pillow on the CPU): the same files refused with
    the same reasons, the same probabilities, the same thumbnails."""
    monkeypatch.setenv("ARTLAB_PRECISION", "fp32")      # the same arithmetic on both sides
    folder = tmp_path / "art"
    for i in range(5):
        make_image(folder / f"{i}.jpg", (40 * i, 90, 200 - 30 * i), size=(90 + 10 * i, 60), pattern=i)
    make_image(folder / "flat.png", (10, 150, 10), size=(64, 64), pattern=5)
    (folder / "text.jpg").write_bytes(b"not a picture")
    (folder / "cut.jpg").write_bytes((folder / "1.jpg").read_bytes()[:300])
    paths = list_images(folder)
    want = index_paths(Gallery(tmp_path / "cpu"), ArtModels(tiny_weights, "cpu", autoencoder=False), paths)
    with virtual_cuda():
        got = bulk_index(Gallery(tmp_path / "gpu"), ArtModels(tiny_weights, "cuda", autoencoder=False), paths,
                         batch_size=4, workers=2)
    assert (got.added, got.skipped, sorted(got.errors)) == (want.added, want.skipped, sorted(want.errors))
    assert got.added == 6 and len(got.errors) == 2
    works = {g: {w.sha256: w for w in Gallery(tmp_path / g).browse()} for g in ("cpu", "gpu")}
    assert works["cpu"].keys() == works["gpu"].keys()
    for sha, work in works["cpu"].items():
        other = works["gpu"][sha]
        for head, ranked in work.labels.items():
            assert [n for n, _ in ranked] == [n for n, _ in other.labels[head]]
            assert np.allclose([p for _, p in ranked], [p for _, p in other.labels[head]], atol=1e-5)
        assert np.array_equal(np.asarray(Image.open(work.thumb)), np.asarray(Image.open(other.thumb)))


def test_the_strong_recipe_on_the_gpu(class_folders, tmp_path, monkeypatch):
    """Lite1, mixup and CutMix on every batch, EMA kept and judged: every tensor on the model's device."""
    from artlab.training.image import StrongRecipe

    monkeypatch.setattr("artlab.training.image.load_imagenet_weights", lambda backbone: None)  # no download
    recipe = StrongRecipe(backbone="lite1", mixup=0.2, cutmix=1.0, ema=0.9)
    with virtual_cuda():
        card = train_classifier(class_folders, tmp_path, epochs=2, batch_size=8, image_size=32, limit=1,
                                device="cuda", recipe=recipe)
    assert card["config"]["backbone"] == "lite1" and card["training"]["epochs_run"] == 2
    assert all("ema_score" in record for record in card["training"]["history"])
