import torch

from artlab.labels import DISPLAY_NAMES, STYLES, SUBJECTS, display_name
from artlab.models.autoencoder import (
    IMAGE_SIZE,
    LATENT_SHAPE,
    ArtAutoencoder,
    interpolate,
    psnr,
)
from artlab.models.backbone import (
    UNUSED_PRETRAINED,
    EfficientNetLite0,
    load_imagenet_weights,
    map_pretrained,
    pretrained_file,
)
from artlab.models.classifier import ArtClassifier


def test_every_pretrained_tensor_is_mapped():
    state = torch.load(pretrained_file(), map_location="cpu", weights_only=True)
    mapped = map_pretrained(state)
    ours = EfficientNetLite0().state_dict()
    # Every tensor of our backbone comes from the file, with the file's shape...
    assert set(mapped) == set(ours)
    for key, value in mapped.items():
        assert ours[key].shape == value.shape, key
    # ...and the only file tensors left out are the ImageNet classifier's.
    assert set(state) - set(UNUSED_PRETRAINED) == {k for k in state if not k.startswith("_fc.")}
    assert len(mapped) == len(state) - len(UNUSED_PRETRAINED)


def test_loaded_backbone_holds_the_pretrained_values():
    state = torch.load(pretrained_file(), map_location="cpu", weights_only=True)
    model = load_imagenet_weights(EfficientNetLite0())
    loaded = model.state_dict()
    for ours, value in map_pretrained(state).items():
        assert torch.equal(loaded[ours], value), ours


def test_classifier_outputs_heads_and_unit_embedding():
    model = ArtClassifier({"style": len(STYLES), "subject": len(SUBJECTS)}).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 96, 96))
    assert out["style"].shape == (2, 7) and out["subject"].shape == (2, 5)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2), atol=1e-5)


def test_autoencoder_bottleneck_is_at_most_a_48th():
    model = ArtAutoencoder(16).eval()
    x = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    with torch.inference_mode():
        z = model.encode(x)
        assert tuple(z.shape[1:]) == LATENT_SHAPE
        assert z.numel() * 48 <= x.numel()
        frames = interpolate(model, x[0], -x[0], steps=5)
    assert frames.shape == (5, 3, IMAGE_SIZE, IMAGE_SIZE)
    # The ends of the walk are the two reconstructions.
    assert torch.allclose(frames[0], model(x)[0], atol=1e-5)


def test_psnr_matches_definition():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.2)  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    assert abs(psnr(b, a).item() - 20.0) < 1e-4


def test_every_label_has_english_and_chinese_names():
    for label in STYLES + SUBJECTS:
        assert label in DISPLAY_NAMES["en"] and label in DISPLAY_NAMES["zh"]
    assert display_name("baroque", "zh") == "巴洛克"
    assert display_name("my_own_class") == "my own class"
