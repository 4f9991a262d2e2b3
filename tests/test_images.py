import pytest
from bad_images import make_bad_files, make_odd_files
from PIL import Image

from artlab.images import MAX_PIXELS, ImageError, letterbox, load_image

REASONS = {
    "empty": "empty file",
    "truncated": "truncated",
    "text_as_jpg": "not an image",
    "random_bytes": "not an image",
    "bomb": f"over our {MAX_PIXELS // 1_000_000} MP limit",
    "missing": "file not found",
}


@pytest.mark.parametrize("name", sorted(REASONS))
def test_bad_files_get_a_clear_one_line_error(tmp_path, name):
    path = make_bad_files(tmp_path)[name]
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and REASONS[name] in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("name", ["cmyk", "16bit", "rgba", "palette", "animated", "1x1", "exif_rotated"])
def test_odd_but_valid_images_load_as_rgb(tmp_path, name):
    im = load_image(make_odd_files(tmp_path)[name])
    assert im.mode == "RGB" and im.width >= 1 and im.height >= 1


def test_exif_orientation_is_applied(tmp_path):
    im = load_image(make_odd_files(tmp_path)["exif_rotated"])
    assert im.size == (40, 80)  # stored 80x40, shown rotated


def test_sixteen_bit_keeps_its_range(tmp_path):
    im = load_image(make_odd_files(tmp_path)["16bit"])
    low, high = im.convert("L").getextrema()
    assert low < 10 and high > 245  # scaled from 0..65535, not clipped to white


def test_transparency_is_laid_on_white(tmp_path):
    im = load_image(make_odd_files(tmp_path)["rgba"])
    assert im.getpixel((0, 0)) == (255, 127, 127) or im.getpixel((0, 0))[1] > 100


def test_large_images_are_reduced_when_asked(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), (1, 2, 3)).save(path)
    im = load_image(path, max_side=448)
    assert max(im.size) <= 448


def test_letterbox_keeps_aspect_with_black_bars():
    im = letterbox(Image.new("RGB", (200, 100), (255, 255, 255)), 64)
    assert im.size == (64, 64)
    assert im.getpixel((32, 2)) == (0, 0, 0) and im.getpixel((32, 32)) == (255, 255, 255)
