"""Pictures that are not paintings, made here: what the "unsure" answer is measured on.

A visitor may hold up anything: a blank frame, sensor noise, a screenshot, a page of text, a
photo. `make_nonpaintings(count, seed)` draws such pictures from nine kinds, in equal shares, so
the unsure rate can be reported per kind. Photos are not made here (none ship with the project):
`benchmarks/unsure.py --photos DIR` adds a folder of them (scikit-image's sample photos, say).
"""

import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("uniform_noise", "gaussian_noise", "flat_colour", "linear_gradient", "radial_gradient",
         "rendered_text", "stripes_checks", "screenshot", "tiny_picture")
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua invoice total due date account number page report chapter figure").split()


def _size(rng: random.Random) -> tuple[int, int]:
    return rng.choice([(320, 320), (480, 360), (360, 480), (640, 400), (256, 256)])


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randrange(256) for _ in range(3))


def _uniform_noise(rng, np_rng):
    w, h = _size(rng)
    return Image.fromarray(np_rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _gaussian_noise(rng, np_rng):
    w, h = _size(rng)
    grey = rng.random() < 0.5
    noise = np_rng.normal(rng.uniform(60, 190), rng.uniform(15, 60), (h, w, 1 if grey else 3))
    return Image.fromarray(np.clip(np.broadcast_to(noise, (h, w, 3)), 0, 255).astype(np.uint8))


def _flat_colour(rng, np_rng):
    return Image.new("RGB", _size(rng), _colour(rng))


def _linear_gradient(rng, np_rng):
    w, h = _size(rng)
    a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = (xx * np.cos(angle) + yy * np.sin(angle))
    t = (t - t.min()) / max(np.ptp(t), 1)
    return Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8))


def _radial_gradient(rng, np_rng):
    w, h = _size(rng)
    a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    t = np.hypot(xx - cx, yy - cy)
    t = t / max(t.max(), 1)
    return Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                      # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _rendered_text(rng, np_rng):
    w, h = _size(rng)
    dark = rng.random() < 0.2
    image = Image.new("RGB", (w, h), (20, 20, 20) if dark else (rng.randrange(230, 256),) * 3)
    draw, size = ImageDraw.Draw(image), rng.choice([12, 16, 20, 28])
    ink = (235, 235, 235) if dark else (rng.randrange(0, 60),) * 3
    for y in range(rng.randrange(5, 20), h - size, int(size * 1.5)):
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))
        draw.text((rng.randrange(5, 30), y), line, fill=ink, font=_font(size))
    return image


def _stripes_checks(rng, np_rng):
    w, h = _size(rng)
    period = rng.choice([4, 8, 16, 32, 48])
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((xx // period + yy // period) % 2 if rng.random() < 0.5 else (xx // period) % 2).astype(bool)
    pixels = np.where(mask[..., None], np.array(_colour(rng)), np.array(_colour(rng)))
    return Image.fromarray(pixels.astype(np.uint8))


def _screenshot(rng, np_rng):
    """Flat panels, a title bar, buttons and a few lines of text: an app or web page."""
    w, h = _size(rng)
    image = Image.new("RGB", (w, h), (rng.randrange(235, 256),) * 3)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, w, rng.randrange(24, 48)], fill=_colour(rng))
    for _ in range(rng.randrange(3, 9)):
        x, y = rng.randrange(0, w - 60), rng.randrange(50, h - 30)
        draw.rectangle([x, y, x + rng.randrange(40, 160), y + rng.randrange(18, 40)], fill=_colour(rng),
                       outline=(90, 90, 90))
    for y in range(60, h - 16, 22):
        if rng.random() < 0.5:
            draw.text((rng.randrange(8, 40), y), " ".join(rng.choice(WORDS) for _ in range(4)),
                      fill=(30, 30, 30), font=_font(14))
    return image


def _tiny_picture(rng, np_rng):
    """A 1x1 to 4x4 picture: what an empty or broken upload often is."""
    side = rng.choice([1, 1, 2, 3, 4])
    image = Image.fromarray(np_rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return image.filter(ImageFilter.BLUR) if side > 3 else image


MAKERS = {"uniform_noise": _uniform_noise, "gaussian_noise": _gaussian_noise, "flat_colour": _flat_colour,
          "linear_gradient": _linear_gradient, "radial_gradient": _radial_gradient, "rendered_text": _rendered_text,
          "stripes_checks": _stripes_checks, "screenshot": _screenshot, "tiny_picture": _tiny_picture}


def make_nonpaintings(count: int, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """`count` (kind, picture) pairs, the kinds in turn, reproducible from `seed`."""
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    return [(KINDS[i % len(KINDS)], MAKERS[KINDS[i % len(KINDS)]](rng, np_rng)) for i in range(count)]
