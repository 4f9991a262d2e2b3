"""Builders for the odd and the bad image files the loader must cope with (shared by several tests)."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds almost nothing: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def jpeg_bytes(size=(80, 60), color=(180, 40, 40), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", **save)
    return buf.getvalue()


def make_bad_files(folder: Path) -> dict[str, Path]:
    """name -> path of files the loader must refuse with a clear message."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "empty": b"",
        "truncated": jpeg_bytes(size=(300, 200))[:400],
        "text_as_jpg": b"this is not an image, just text\n" * 4,
        "random_bytes": bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        "bomb": png_claiming_size(10_000, 10_000),
    }
    suffix = {"bomb": ".png"}
    paths = {}
    for name, data in files.items():
        path = folder / f"{name}{suffix.get(name, '.jpg')}"
        path.write_bytes(data)
        paths[name] = path
    paths["missing"] = folder / "does_not_exist.jpg"
    return paths


def make_odd_files(folder: Path) -> dict[str, Path]:
    """name -> path of odd but valid images the loader must read."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    cmyk = Image.new("CMYK", (40, 30), (0, 200, 200, 0))
    paths["cmyk"] = folder / "cmyk.jpg"
    cmyk.save(paths["cmyk"])
    sixteen = Image.fromarray((np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16))
    paths["16bit"] = folder / "16bit.png"
    sixteen.save(paths["16bit"])
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 128))
    paths["rgba"] = folder / "rgba.png"
    rgba.save(paths["rgba"])
    palette = Image.new("P", (40, 30), 3)
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] * 64)
    paths["palette"] = folder / "palette.png"
    palette.save(paths["palette"], transparency=0)
    frames = [Image.new("P", (40, 30), i) for i in range(3)]
    paths["animated"] = folder / "animated.gif"
    frames[0].save(paths["animated"], save_all=True, append_images=frames[1:], duration=50, loop=0)
    paths["1x1"] = folder / "one.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(paths["1x1"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    paths["exif_rotated"] = folder / "rotated.jpg"
    Image.new("RGB", (80, 40), (0, 128, 255)).save(paths["exif_rotated"], exif=exif.tobytes())
    return paths
