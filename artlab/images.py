"""The one image loader: every image path (CLI, app upload, gallery index, training upload) comes here.

It enforces our own limits (bytes and pixels), copes with the odd-but-valid
(CMYK, 16-bit, alpha, palette, animated, EXIF orientation, 1x1) and turns the
bad (empty, truncated, not an image, decompression bomb, missing) into an
ImageError whose message names the file and the reason.

Torch is imported only when a tensor is asked for: the ONNX engine works on NumPy arrays.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from artlab import paths

if TYPE_CHECKING:
    import torch

MAX_BYTES = int(paths.number_setting("MAX_IMAGE_MB", 50) * 1024 * 1024)
MAX_PIXELS = int(paths.number_setting("MAX_IMAGE_MP", 40) * 1_000_000)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
# Pillow's format name -> the suffix a copy of such a file is stored under (others are re-encoded).
FORMAT_SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
                   "TIFF": ".tif", "AVIF": ".avif"}

# Pillow's own bomb check warns at 89 MP and raises at 179 MP; ours is stricter and
# applied before decoding, so raise Pillow's out of the way of our clearer message.
Image.MAX_IMAGE_PIXELS = max(MAX_PIXELS * 2, Image.MAX_IMAGE_PIXELS or 0)


class ImageError(ValueError):
    """An input that cannot be used as an image; str() is a one-line message for people.

    `kind` says why, for a caller that words it itself (the app, in the visitor's language):
    missing, too_big, empty, not_image, bomb, corrupt."""

    def __init__(self, message: str, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind


def _name(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "upload"


def read_image_bytes(source) -> bytes:
    """A path's (or bytes') content within our byte limit, or ImageError (missing, folder, empty, too big)."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{path}: file not found", "missing")
        if path.is_dir():
            raise ImageError(f"{path}: is a folder, not an image", "missing")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ImageError(f"{path}: file is {size / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB limit",
                             "too_big")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{_name(source)}: empty file", "empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{_name(source)}: {len(data) / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB limit",
                         "too_big")
    return data


def stored_suffix(data: bytes) -> str | None:
    """The image suffix for these bytes, from the format Pillow decodes them as (never the file's
    name: a JPEG with HTML appended, named x.html, is a .jpg); None for formats to re-encode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return FORMAT_SUFFIXES.get(Image.open(io.BytesIO(data)).format)
    except Exception:  # noqa: BLE001 - the caller has already loaded it; unreadable here means re-encode
        return None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is laid on white, like a print on paper."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def load_image(source, max_side: int | None = None) -> Image.Image:
    """Open a path, bytes or PIL image as an upright RGB image, or raise ImageError.

    `max_side`: decode JPEGs at a reduced size when the caller needs no more than this
    (a 24 MP photo decodes 8x faster at 1/8 scale) and shrink anything larger.
    """
    if isinstance(source, Image.Image):
        im = source
    elif isinstance(source, np.ndarray):
        im = Image.fromarray(source)
    else:
        data = read_image_bytes(source)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check size ourselves
                im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(f"{_name(source)}: not an image, or a format we cannot read", "not_image") from None
        except Image.DecompressionBombError:  # Pillow's own check at open, past twice its limit
            raise ImageError(f"{_name(source)}: refused as a decompression bomb (too many pixels)", "bomb") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise ImageError(f"{_name(source)}: cannot read image ({e})") from None
        except Exception as e:  # noqa: BLE001 - decoders of untrusted bytes fail in any way (fuzz-found)
            raise ImageError(f"{_name(source)}: corrupt image (the decoder failed: {type(e).__name__})") from None
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{_name(source)}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
                         f"over our {MAX_PIXELS // 1_000_000} MP limit (possible decompression bomb)", "bomb")
    if width < 1 or height < 1:
        raise ImageError(f"{_name(source)}: image has no pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if getattr(im, "is_animated", False):
                im.seek(0)  # first frame of a GIF/WebP/APNG animation
            if max_side and im.format == "JPEG" and max(width, height) > max_side:
                # Ask for the size the long side will shrink to: asking for a square would keep
                # the short side >= max_side and so the full-size decode, for nothing.
                scale = max_side / max(width, height)
                im.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            im = ImageOps.exif_transpose(im) or im
            im.load()
            rgb = _to_rgb(im)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{_name(source)}: refused as a decompression bomb ({e})", "bomb") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        reason = "truncated or corrupt image" if "truncated" in str(e) or isinstance(e, EOFError) else str(e)
        raise ImageError(f"{_name(source)}: {reason}") from None
    except Exception as e:  # noqa: BLE001 - e.g. Pillow's GIF reader raises IndexError on a cut animation
        raise ImageError(f"{_name(source)}: corrupt image (the decoder failed: {type(e).__name__})") from None
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return rgb


def letterbox(im: Image.Image, size: int, resample: Image.Resampling = Image.Resampling.BICUBIC) -> Image.Image:
    """Fit the whole image in a size x size square with black bars, as the training data was made."""
    scale = size / max(im.size)
    new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    resized = im.resize(new, resample, reducing_gap=3.0) if new != im.size else im
    canvas = Image.new("RGB", (size, size))
    canvas.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def to_uint8_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 tensor C x H x W."""
    import torch

    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize(pixels: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """Pixels in [0, peak] (uint8 images: 255; augmented floats: 1.0) -> float in [-1, 1], the scale
    the Lite0 weights expect. The only place the models' input scale is written. A NumPy array
    (the ONNX engine's) gets the same float32 arithmetic, so both engines see the same numbers."""
    if isinstance(pixels, np.ndarray):
        return pixels.astype(np.float32) / np.float32(peak / 2) - np.float32(1.0)
    return pixels.float().div(peak / 2).sub_(1.0)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """The inverse of normalize: a model's [-1, 1] output -> uint8 pixels (tensor or NumPy array)."""
    if isinstance(x, np.ndarray):
        return np.round((np.clip(x, -1, 1) + 1) * np.float32(127.5)).astype(np.uint8)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte()


def list_images(folder: str | Path) -> list[Path]:
    """Image files under a folder, sorted, by suffix (the loader still checks each one)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
