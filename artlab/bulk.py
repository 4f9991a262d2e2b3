"""Bulk indexing at accelerator speed: `python -m artlab index DIR --bulk` (the default on a CUDA GPU).

The ordinary path (`indexing.index_paths`) decodes with Pillow in the calling thread and
analyses 32 pictures at a time, which suits a CPU. On a GPU that would leave the device idle
most of the time, so here the work is a pipeline whose stages overlap:

  read      a thread pool reads files ahead of the model (a bounded window), hashes them and
            checks each JPEG without decoding it: its header (format, colour mode, pixel count)
            and its segments, walked from SOI to EOI (jpeg_complete: nvJPEG would decode a
            cut-off file without complaint, where the CPU loader refuses it);
  decode    whole JPEGs up to 4 MP are decoded in batches on the device (nvJPEG through
            torchvision.io.decode_jpeg, EXIF orientation applied), their bytes staged in one
            reused pinned buffer; every other file, and any JPEG the batch decoder refuses,
            goes through the one safe loader (images.load_image), which says what is wrong in
            the same words on either path;
  resize    on the device: letterboxed to the classifier's input, plus a thumbnail-sized copy;
  analyse   ArtModels.label_tensors: both heads and the embedding, bf16 and channels_last
            where the device has them, mirror TTA, one batch of `batch_size`; labels ranked on
            the device and brought back with the embeddings in one transfer, and the batch's
            thumbnails in one more;
  store     the previous batch's thumbnails are encoded by the thread pool and committed
            (one SQLite transaction per batch, as in the ordinary path) while the next runs.

On the CPU the same pipeline runs (decoding with libjpeg-turbo instead of nvJPEG), which is
how the tests check it; there the ordinary path is as fast, since the model is the bottleneck.
"""

import importlib
import io
import logging
import threading
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artlab import resample
from artlab.images import (
    ImageError,
    letterbox,
    normalize,
    read_image_bytes,
    to_uint8_tensor,
)
from artlab.indexing import IndexReport, Intake
from artlab.store.gallery import THUMB_SIDE, Gallery
from artlab.store.works import content_hash

log = logging.getLogger(__name__)

READ_AHEAD_BATCHES = 2


@dataclass
class _File:
    path: Path
    sha: str | None = None
    data: bytes | None = None
    batch_decodable: bool = False   # a JPEG the batch decoder may take
    error: str | None = None


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's segments run from SOI to EOI with nothing cut off, walked without decoding.

    nvJPEG decodes a truncated file into a picture with a grey bottom and no error, where the CPU
    loader (Pillow) refuses it; so a file the walk does not finish goes to the CPU loader, whose
    verdict and message then hold on either path. (A file the walk wrongly doubts loses only speed.)
    """
    pos, end = 2, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:                       # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:                       # EOI: complete
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:   # markers without a length
            pos += 2
            continue
        if pos + 4 > end:
            return False
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:                       # SOS: entropy-coded data up to the next real marker
            pos = _end_of_scan(data, pos)
            if pos < 0:
                return False
    return False


def _end_of_scan(data: bytes, pos: int) -> int:
    """Where the entropy-coded data from `pos` ends (at a marker other than stuffing or a restart); -1: cut off."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return -1
        follower = data[pos + 1]
        if follower == 0x00 or 0xD0 <= follower <= 0xD7:    # a stuffed 0xFF, or a restart marker
            pos += 2
        elif follower == 0xFF:                               # fill bytes before the next marker
            pos += 1
        else:
            return pos


def _batch_decodable(data: bytes, full_size_side: int, input_side: int) -> bool:
    """Whether the device path gives this file exactly what the app's loader would, judged without
    decoding it: a whole JPEG in RGB or greyscale that the app keeps at full size (long side at most
    `full_size_side`: larger ones it decodes at a reduced size, Pillow's draft mode, which no GPU
    decoder reproduces) and that letterboxing to `input_side` resizes in one Pillow step."""
    if data[:3] != b"\xff\xd8\xff" or not jpeg_complete(data):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                size, fits = im.size, 0 < min(im.size) and max(im.size) <= full_size_side
                return (im.format == "JPEG" and im.mode in ("RGB", "L") and fits
                        and resample.exact_for(size, _fitted_size(size[::-1], input_side)[::-1]))
    except Exception:  # noqa: BLE001 - any header the parser rejects: the one loader will say why
        return False


def _read(path: Path, full_size_side: int, input_side: int) -> _File:
    """Read, hash and classify one file (runs in the thread pool)."""
    try:
        data = read_image_bytes(path)   # the one loader's byte limits and messages
        return _File(path, content_hash(data), data, _batch_decodable(data, full_size_side, input_side))
    except ImageError as e:
        return _File(path, error=str(e))
    except OSError as e:
        return _File(path, error=f"{path}: cannot read ({e.strerror or e})")


class _PinnedStaging:
    """One host buffer, reused from batch to batch, that holds a batch's JPEG bytes.

    Page-locked (pinned) on a GPU, so the copies to the device are direct DMA; allocating a
    pinned buffer is slow, which is why it is reused and only ever grown. Reuse is safe: a
    batch's bytes are refilled only after the previous batch's analysis waited for the device.
    """

    def __init__(self, pin: bool):
        self.pin, self.buffer = pin, torch.empty(0, dtype=torch.uint8)

    def views(self, blobs: list[bytes]) -> list[torch.Tensor]:
        total = sum(len(b) for b in blobs)
        if self.buffer.numel() < total:
            self.buffer = torch.empty(int(total * 1.25), dtype=torch.uint8)
            if self.pin:
                self.buffer = self.buffer.pin_memory()
        views, offset = [], 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "buffer is not writable": it is only read from
            sources = [torch.frombuffer(blob, dtype=torch.uint8) for blob in blobs]
        for source in sources:
            view = self.buffer[offset:offset + len(source)]
            view.copy_(source)
            views.append(view)
            offset += len(source)
        return views


def _decode_jpegs(blobs: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """uint8 3 x H x W tensors on `device`, upright; None for any file the decoder refuses."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not blobs:
        return []

    def one(blob):
        return decode_jpeg(blob, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)

    try:
        decoded = decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        return list(decoded)
    except RuntimeError:  # one bad file fails the whole batch: find it
        out = []
        for blob in blobs:
            try:
                out.append(one(blob))
            except RuntimeError:
                out.append(None)
        return out


def _fitted_size(size_hw: tuple[int, int], side: int) -> tuple[int, int]:
    """(h, w) whose long side is `side`, rounded as images.letterbox rounds."""
    height, width = size_hw
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _letterbox(image: torch.Tensor, side: int) -> torch.Tensor:
    """As images.letterbox, on the device and to the same bytes: the picture resized by Pillow's
    bicubic (artlab.resample) and centred in a black side x side square; float 0-255."""
    height, width = _fitted_size(image.shape[-2:], side)
    fitted = resample.resize_bicubic(image, height, width) if (height, width) != image.shape[-2:] else image
    canvas = torch.zeros(3, side, side, device=image.device)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[:, top:top + height, left:left + width] = fitted
    return canvas


def _thumbnail(image: torch.Tensor) -> torch.Tensor:
    """uint8 H x W x 3 on the device: the gallery's thumbnail, which for a picture the device path
    takes (long side at most THUMB_SIDE) is the picture itself, as Pillow's thumbnail() leaves it."""
    return image.permute(1, 2, 0)


def _thumbnails_to_host(thumbs: list) -> list[Image.Image]:
    """PIL thumbnails; the batch's device-made ones come back in one transfer, not one each."""
    on_device = [t for t in thumbs if not isinstance(t, Image.Image)]
    if not on_device:
        return thumbs
    flat = torch.cat([t.reshape(-1) for t in on_device]).cpu().numpy()
    ends = np.cumsum([t.numel() for t in on_device])
    arrays = iter(chunk.reshape(t.shape) for chunk, t in zip(np.split(flat, ends[:-1]), on_device))
    return [t if isinstance(t, Image.Image) else Image.fromarray(next(arrays)) for t in thumbs]


_decoder_import: threading.Thread | None = None


def preload_decoder() -> None:
    """Start importing torchvision.io (the batch JPEG decoder) in a thread, once.

    Importing torchvision imports torch._dynamo (torchvision.ops.roi_align does), 3-5 s; left to
    the first batch it stalled the pipeline mid-run. Started before the models load (the index
    command and benchmark do that), it runs beside the loading instead."""
    global _decoder_import
    if _decoder_import is None:
        _decoder_import = threading.Thread(target=importlib.import_module, args=("torchvision.io",),
                                           name="artlab-import-torchvision", daemon=True)
        _decoder_import.start()


class BulkIndexer:
    """The pipeline above, for one gallery and one set of models."""

    def __init__(self, gallery: Gallery, models, batch_size: int = 256, workers: int = 8):
        self.gallery, self.models, self.batch_size = gallery, models, batch_size
        if models.device.type == "cuda":
            preload_decoder()   # a no-op when the caller started it before loading the models
        # At least 2: a store waits in the pool for the thumbnails it hands to the pool.
        self.pool = ThreadPoolExecutor(max(2, workers), thread_name_prefix="artlab-bulk")
        self.staging = _PinnedStaging(pin=models.device.type == "cuda")
        self.gpu_decode = models.device.type == "cuda"
        self.full_size_side = models.decode_side(THUMB_SIDE)   # as the app's loader decodes for the gallery

    def run(self, paths: list[Path], root: Path | None = None, meta: dict | None = None,
            progress=None) -> IndexReport:
        intake = Intake(self.gallery, Path(root) if root else None, meta or {})
        pending_store: Future | None = None
        batch: list[_File] = []
        try:
            for item in self._read_ahead(paths):
                if item.error:
                    intake.failed(item.error)
                elif intake.is_new(item.sha):
                    batch.append(item)
                if progress:
                    progress(1)
                if len(batch) >= self.batch_size:
                    pending_store = self._analyse_and_store(batch, intake, pending_store)
                    batch = []
            if batch:
                pending_store = self._analyse_and_store(batch, intake, pending_store)
            if pending_store is not None:
                pending_store.result()
        finally:
            self.pool.shutdown(wait=True)
        return intake.report

    def _read_ahead(self, paths):
        """Files in order, read by the pool at most READ_AHEAD_BATCHES batches ahead (bounded memory)."""
        window, queue = self.batch_size * READ_AHEAD_BATCHES, deque()
        for path in paths:
            queue.append(self.pool.submit(_read, Path(path), self.full_size_side, self.models.input_size))
            if len(queue) >= window:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()

    def _analyse_and_store(self, batch, intake: Intake, pending_store) -> Future:
        """Decode, resize and analyse `batch`; queue its store once the previous store is done."""
        pictures, thumbs, kept = self._decode_batch(batch, intake)
        if kept:
            analyses = self.models.label_tensors(normalize(torch.stack(pictures)))
            # After the analysis, which waited for the device: each copy back is then a plain copy.
            thumbs = _thumbnails_to_host(thumbs)
            works = intake.works([(f.path, f.sha, thumb) for f, thumb in zip(kept, thumbs)], analyses)
        else:
            works = []
        if pending_store is not None:
            pending_store.result()  # one transaction at a time, in order
        return self.pool.submit(intake.store, works, self.pool)

    def _decode_batch(self, batch, intake: Intake):
        """The batch's pictures letterboxed on the device, their thumbnails, and the files kept."""
        side, device = self.models.input_size, self.models.device
        jpegs = [f for f in batch if f.batch_decodable]
        loading = {id(f): self.pool.submit(self._load, f.path) for f in batch if not f.batch_decodable}
        decoded = dict(zip((id(f) for f in jpegs), _decode_jpegs(self.staging.views([f.data for f in jpegs]),
                                                                 device if self.gpu_decode else torch.device("cpu"))))
        pictures, thumbs, kept = [], [], []
        for f in batch:
            image = decoded.get(id(f))
            if image is not None:
                image = image.to(device, non_blocking=True)
                pictures.append(_letterbox(image, side))
                thumbs.append(_thumbnail(image))
            else:  # loaded by the pool (or refused by the batch decoder: loaded now)
                picture, error = (loading.get(id(f)) or self.pool.submit(self._load, f.path)).result()
                if error:
                    intake.failed(error)
                    continue
                pictures.append(to_uint8_tensor(letterbox(picture, side)).to(device).float())
                thumbs.append(picture)
            kept.append(f)
            f.data = None  # the bytes are no longer needed: keep memory flat on long runs
        return pictures, thumbs, kept

    def _load(self, path: Path) -> tuple[Image.Image | None, str | None]:
        """The picture as the app loads it (in the pool: Pillow decodes without the GIL), or why not."""
        try:
            return self.models.prepare(path, display_side=THUMB_SIDE), None
        except ImageError as e:   # its message names the file, as the ordinary index reports it
            return None, str(e)


def bulk_index(gallery: Gallery, models, paths: list[Path], root: Path | None = None, meta: dict | None = None,
               batch_size: int = 256, workers: int = 8, progress=None) -> IndexReport:
    """Index `paths` through the pipeline; same result and report as `indexing.index_paths`."""
    return BulkIndexer(gallery, models, batch_size, workers).run(paths, root, meta, progress)
