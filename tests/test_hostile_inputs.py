"""Property-based tests: random bytes, random valid images and mangled images at the loader and
the predict path, random text at the text path. The contract: an answer or a one-line ImageError
(an error record for text), never another exception, never a hang (hypothesis deadlines).

The hand-picked bad and odd files are in test_images.py (tests/bad_images.py); these tests
look for what nobody thought of.
"""

import io
from datetime import timedelta

import numpy as np
import pytest
from bad_images import png_claiming_size
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from artlab.images import ImageError, load_image

# Modes and the formats that can store them (Pillow refuses the other pairs when saving).
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "TGA", "JPEG2000", "AVIF", "PCX", "SGI"]
SLOW = dict(deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])


def random_image(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode in ("I", "I;16"):
        return Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16)).convert(mode) if mode == "I" \
            else Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.normal(100, 500, (h, w)).astype(np.float32))
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "PA":
        return im.convert("P").convert("PA")
    return im.convert(mode)


@st.composite
def encoded_images(draw) -> bytes:
    """A random image in a random mode and size, saved in a random format (skipping pairs Pillow refuses)."""
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS))
    size = (draw(st.integers(1, 300)), draw(st.integers(1, 300)))
    im = random_image(mode, size, draw(st.integers(0, 2**16)))
    options = {}
    if fmt in ("GIF", "WEBP", "PNG") and draw(st.booleans()):       # animated
        frames = [random_image(mode, size, k) for k in range(draw(st.integers(1, 3)))]
        options = dict(save_all=True, append_images=frames)
    if fmt in ("JPEG", "WEBP", "PNG", "TIFF") and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(0, 9))                       # orientation, including invalid ones
        options["exif"] = exif.tobytes()
    buf = io.BytesIO()
    try:
        im.save(buf, fmt, **options)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)                                                 # Pillow cannot write this pair
    try:
        Image.open(io.BytesIO(buf.getvalue())).load()
    except Exception:  # noqa: BLE001 - Pillow wrote a file it cannot read itself (e.g. an empty ICO)
        assume(False)
    return buf.getvalue()


def mangle(data: bytes, cut: float, flips: list[tuple[float, int]]) -> bytes:
    """Truncate and flip bytes of a valid file: the corrupt uploads that get furthest into decoders."""
    data = bytearray(data[:max(1, int(len(data) * cut))])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    return bytes(data)


def loads_or_refuses(source, max_side=None):
    """The loader's whole contract in one place: an RGB image with pixels, or an ImageError."""
    try:
        im = load_image(source, max_side=max_side)
    except ImageError as e:
        message = str(e)
        assert message and "\n" not in message and "Traceback" not in message
        return None
    assert im.mode == "RGB" and im.width >= 1 and im.height >= 1
    if max_side:
        assert max(im.size) <= max_side
    return im


# ------------------------------------------------------------------ the loader

@settings(max_examples=150, **SLOW)
@given(st.binary(max_size=4096))
def test_random_bytes_load_or_get_a_one_line_error(data):
    loads_or_refuses(data)


@settings(max_examples=80, **SLOW)
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ", b"BM",
                        b"II*\0", b"MM\0*", b"\0\0\0\x1cftypavif", b"P6\n", b"\0\0\x01\0"]),
       st.binary(max_size=2048))
def test_known_magic_numbers_followed_by_junk(magic, rest):
    loads_or_refuses(magic + rest)


@settings(max_examples=80, **SLOW)
@given(encoded_images(), st.sampled_from([None, 64, 256]))
def test_random_valid_images_load_as_rgb(data, max_side):
    im = loads_or_refuses(data, max_side)
    assert im is not None, "a valid image was refused"


@settings(max_examples=120, **SLOW)
@given(encoded_images(), st.floats(0.0, 1.0), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6))
def test_truncated_and_bit_flipped_images(data, cut, flips):
    loads_or_refuses(mangle(data, cut, flips), 128)


@settings(max_examples=40, **SLOW)
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_any_claimed_size_is_refused_or_read_without_decoding_a_bomb(width, height):
    """PNG headers claiming any size, including past Pillow's own bomb limit: one clear message."""
    im = loads_or_refuses(png_claiming_size(width, height))
    if width * height > 40_000_000:
        assert im is None


def test_pillow_bomb_limit_is_reported_as_an_image_error():
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(png_claiming_size(30_000, 30_000))          # 900 MP: Pillow raises at open


def test_odd_python_objects_are_refused_cleanly(tmp_path):
    for source in (str(tmp_path), tmp_path / "nothing.png", b"", bytearray(b"\0" * 10)):
        with pytest.raises(ImageError):
            load_image(source)
    assert load_image(np.zeros((3, 2, 3), dtype=np.uint8)).size == (2, 3)


# ------------------------------------------------------------------ the predict path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def art_models(tiny_weights):
    from artlab.inference.image import ArtModels
    return ArtModels(tiny_weights, "cpu")


def _predict(models, data, explain):
    try:
        image = models.prepare(data)
    except ImageError:
        return None
    [analysis] = models.analyze([image], explain=explain)
    for head, ranked in analysis.labels.items():
        probs = [p for _, p in ranked]
        assert np.isfinite(probs).all() and abs(sum(probs) - 1) < 1e-3, head
    assert np.isfinite(analysis.embedding.numpy()).all()
    return analysis


@settings(max_examples=40, **SLOW)
@given(st.one_of(encoded_images(), st.binary(max_size=2048),
                 st.builds(mangle, encoded_images(), st.floats(0.3, 1.0),
                           st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3))),
       st.booleans())
def test_predict_path_answers_or_refuses(art_models, data, explain):
    _predict(art_models, data, explain)


@pytest.mark.parametrize("size", [(1, 1), (1, 4000), (4000, 1), (2, 3)])
def test_extreme_shapes_are_analysed(art_models, size):
    data = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(data, "PNG")
    analysis = _predict(art_models, data.getvalue(), explain=True)
    assert analysis is not None and analysis.psnr is not None and np.isfinite(analysis.psnr)


# ------------------------------------------------------------------ the text path

@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    """Tiny text models trained here in about a second (the recipe of test_text.py, smaller)."""
    import torch
    from test_text import write_text_data

    from artlab.inference.text import TextModels
    from artlab.training.text import train_autoencoder, train_classifier

    data = write_text_data(tmp_path_factory.mktemp("hostile-text"), titles=60, descriptions=10)
    out = tmp_path_factory.mktemp("hostile-text-weights")
    torch.manual_seed(0)
    small = dict(epochs=1, batch_size=16, embed_dim=8, hidden=8, device="cpu", show_progress=False)
    train_classifier(data, out, **small)
    train_autoencoder(data, out, code_dim=8, decoder_hidden=8, **small)
    return TextModels(out, device="cpu")


TEXTS = st.one_of(
    st.text(max_size=300),                                                      # any unicode
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]), max_size=200),
    st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=50),       # emoji
    st.builds(lambda word, n: word * n, st.text(min_size=1, max_size=8), st.integers(1000, 5000)),  # huge
)


@settings(max_examples=60, **SLOW)
@given(st.lists(TEXTS, min_size=1, max_size=4))
def test_any_text_gets_an_answer_or_an_error_record(text_models, texts):
    records = text_models.analyze(texts)
    assert len(records) == len(texts)
    for record, text in zip(records, texts):
        assert record["text"] == text[:200]
        if "error" in record:
            assert "\n" not in record["error"] and "subject" not in record
            continue
        for head in ("subject", "style"):
            probs = [p for _, p in record[head]]
            assert np.isfinite(probs).all() and abs(sum(probs) - 1) < 0.01
        assert isinstance(record["reconstruction"], str)
