"""Bulk indexing at accelerator speed: `python -m artlab index DIR --bulk` (the default on a CUDA GPU).

The ordinary path (`gallery.index_paths`) decodes with Pillow in the calling thread and
analyses 32 pictures at a time, which suits a CPU. On a GPU that would leave the device idle
most of the time, so here the work is a pipeline whose stages overlap:

  read      a thread pool reads files ahead of the model (a bounded window), hashes them and
            checks each JPEG's header (format, colour mode, pixel count) without decoding it;
  decode    JPEGs up to 4 MP are decoded in batches on the device (nvJPEG through
            torchvision.io.decode_jpeg, EXIF orientation applied), their bytes staged in one
            reused pinned buffer; every other file, and any JPEG the batch decoder refuses,
            goes through the one safe loader (images.load_image), which says what is wrong;
  resize    on the device: letterboxed to the classifier's input, plus a thumbnail-sized copy;
  analyse   ArtModels.label_tensors: both heads and the embedding, bf16 and channels_last
            where the device has them, mirror TTA, one batch of `batch_size`;
  store     the previous batch's thumbnails are encoded by the thread pool and committed
            (one SQLite transaction per batch, as in the ordinary path) while the next runs.

On the CPU the same pipeline runs (decoding with libjpeg-turbo instead of nvJPEG), which is
how the tests check it; there the ordinary path is as fast, since the model is the bottleneck.
"""

import io
import logging
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from artlab.images import (
    MAX_PIXELS,
    ImageError,
    letterbox,
    load_image,
    normalize,
    read_image_bytes,
    to_uint8_tensor,
)
from artlab.store.gallery import (
    THUMB_SIDE,
    Gallery,
    IndexReport,
    _meta_for,
    analysis_to_work,
    content_hash,
)

log = logging.getLogger(__name__)

# Larger JPEGs go through Pillow, whose draft mode decodes them at a reduced size; the batch
# decoder would decode them whole, and a few 40 MP pictures would fill the GPU's memory.
GPU_JPEG_MAX_PIXELS = 4_000_000
READ_AHEAD_BATCHES = 2


@dataclass
class _File:
    path: Path
    sha: str | None = None
    data: bytes | None = None
    batch_decodable: bool = False   # a JPEG the batch decoder may take
    error: str | None = None


def _batch_decodable(data: bytes) -> bool:
    """Whether a file is a JPEG in RGB or greyscale within our limits, judged from its header alone."""
    if data[:3] != b"\xff\xd8\xff":
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                pixels = im.width * im.height
                return im.format == "JPEG" and im.mode in ("RGB", "L") and 0 < pixels <= min(
                    GPU_JPEG_MAX_PIXELS, MAX_PIXELS)
    except Exception:  # noqa: BLE001 - any header the parser rejects: the one loader will say why
        return False


def _read(path: Path) -> _File:
    """Read, hash and classify one file (runs in the thread pool)."""
    try:
        data = read_image_bytes(path)   # the one loader's byte limits and messages
        return _File(path, content_hash(data), data, _batch_decodable(data))
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


def _fit(image: torch.Tensor, side: int) -> torch.Tensor:
    """Float C x h x w (0-255) whose long side is `side`: antialiased bicubic, as Pillow resamples."""
    height, width = image.shape[-2:]
    scale = side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    x = image[None].float()
    if size != (height, width):
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 255)
    return x[0]


def _letterbox(image: torch.Tensor, side: int) -> torch.Tensor:
    """As images.letterbox, on the device: the whole picture centred in a black side x side square."""
    fitted = _fit(image, side)
    canvas = torch.zeros(3, side, side, device=image.device)
    h, w = fitted.shape[-2:]
    top, left = (side - h) // 2, (side - w) // 2
    canvas[:, top:top + h, left:left + w] = fitted
    return canvas


def _thumbnail(image: torch.Tensor) -> torch.Tensor:
    """uint8 H x W x 3 on the device, long side at most THUMB_SIDE (the gallery's thumbnail)."""
    small = _fit(image, THUMB_SIDE).round_().byte() if max(image.shape[-2:]) > THUMB_SIDE else image
    return small.permute(1, 2, 0)


def _to_pil(thumb) -> Image.Image:
    return thumb if isinstance(thumb, Image.Image) else Image.fromarray(thumb.cpu().numpy())


class BulkIndexer:
    """The pipeline above, for one gallery and one set of models."""

    def __init__(self, gallery: Gallery, models, batch_size: int = 256, workers: int = 8):
        self.gallery, self.models, self.batch_size = gallery, models, batch_size
        # At least 2: a store waits in the pool for the thumbnails it hands to the pool.
        self.pool = ThreadPoolExecutor(max(2, workers), thread_name_prefix="artlab-bulk")
        self.staging = _PinnedStaging(pin=models.device.type == "cuda")
        self.gpu_decode = models.device.type == "cuda"

    def run(self, paths: list[Path], root: Path | None = None, meta: dict | None = None,
            progress=None) -> IndexReport:
        report, seen = IndexReport(), set()
        pending_store: Future | None = None
        batch: list[_File] = []
        try:
            for item in self._read_ahead(paths):
                if item.error:
                    report.errors.append(item.error)
                elif item.sha in seen or self.gallery.known(item.sha):
                    report.skipped += 1
                else:
                    seen.add(item.sha)
                    batch.append(item)
                if progress:
                    progress(1)
                if len(batch) >= self.batch_size:
                    pending_store = self._analyse_and_store(batch, report, root, meta or {}, pending_store)
                    batch = []
            if batch:
                pending_store = self._analyse_and_store(batch, report, root, meta or {}, pending_store)
            if pending_store is not None:
                pending_store.result()
        finally:
            self.pool.shutdown(wait=True)
        return report

    def _read_ahead(self, paths):
        """Files in order, read by the pool at most READ_AHEAD_BATCHES batches ahead (bounded memory)."""
        window, queue = self.batch_size * READ_AHEAD_BATCHES, deque()
        for path in paths:
            queue.append(self.pool.submit(_read, Path(path)))
            if len(queue) >= window:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()

    def _analyse_and_store(self, batch, report, root, meta, pending_store) -> Future:
        """Decode, resize and analyse `batch`; queue its store once the previous store is done."""
        pictures, thumbs, kept = self._decode_batch(batch, report)
        if kept:
            analyses = self.models.label_tensors(normalize(torch.stack(pictures)))
            # After the analysis, which waited for the device: each copy back is then a plain copy.
            thumbs = [_to_pil(thumb) for thumb in thumbs]
            works = [analysis_to_work(f.path.resolve(), f.sha, thumb, a, _meta_for(f.path, root, meta) if root else {})
                     for f, thumb, a in zip(kept, thumbs, analyses)]
        else:
            works = []
        if pending_store is not None:
            pending_store.result()  # one transaction at a time, in order
        return self.pool.submit(self._store, works, report)

    def _store(self, works, report):
        added = self.gallery.add_batch(works, executor=self.pool) if works else []
        report.added += len(added)
        report.skipped += len(works) - len(added)

    def _decode_batch(self, batch, report):
        """The batch's pictures letterboxed on the device, their thumbnails, and the files kept."""
        side = self.models.input_size
        device = self.models.device
        jpegs = [f for f in batch if f.batch_decodable]
        decoded = dict(zip((id(f) for f in jpegs), _decode_jpegs(self.staging.views([f.data for f in jpegs]),
                                                                 device if self.gpu_decode else torch.device("cpu"))))
        pictures, thumbs, kept = [], [], []
        for f in batch:
            image = decoded.get(id(f))
            if image is not None:
                image = image.to(device, non_blocking=True)
                pictures.append(_letterbox(image, side))
                thumbs.append(_thumbnail(image))
            else:  # not a small RGB JPEG, or refused by the batch decoder: the one safe loader
                try:
                    picture = load_image(f.path, max_side=max(side, THUMB_SIDE))   # its errors name the file
                except ImageError as e:
                    report.errors.append(str(e))
                    continue
                pictures.append(to_uint8_tensor(letterbox(picture, side)).to(device).float())
                thumbs.append(picture)
            kept.append(f)
            f.data = None  # the bytes are no longer needed: keep memory flat on long runs
        return pictures, thumbs, kept


def bulk_index(gallery: Gallery, models, paths: list[Path], root: Path | None = None, meta: dict | None = None,
               batch_size: int = 256, workers: int = 8, progress=None) -> IndexReport:
    """Index `paths` through the pipeline; same result and report as `gallery.index_paths`."""
    return BulkIndexer(gallery, models, batch_size, workers).run(paths, root, meta, progress)
