"""Filling the gallery: index a folder, add an upload, refresh after new weights.

Every indexer does the same around its decoder, in an `Intake`: skip pictures already stored
(by content hash), name each work from the metadata CSV, turn analyses into works, store each
batch in one transaction, and tally the report. `index_paths` decodes with the app's own loader
(Pillow) in the calling thread, which suits a CPU; `artlab.bulk` plugs a pipelined GPU decoder
into the same Intake (`python -m artlab index --bulk`, the default on a CUDA GPU).
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from artlab.images import MAX_BYTES, ImageError, list_images
from artlab.store.gallery import THUMB_SIDE, Gallery
from artlab.store.works import NewWork, content_hash


@dataclass
class IndexReport:
    added: int = 0
    skipped: int = 0          # already in the gallery (same content hash)
    errors: list[str] = field(default_factory=list)   # "path: reason" for unreadable files


def read_meta(csv_path: str | Path) -> dict[str, dict]:
    """Metadata CSV -> {file name or relative path: {"title", "artist", "year"}}.

    The CSV needs a `file` (or `path`/`filename`) column; title, artist and year are optional.
    """
    meta = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = {name.lower().strip(): name for name in reader.fieldnames or []}
        key = next((fields[k] for k in ("file", "path", "filename") if k in fields), None)
        if key is None:
            raise ValueError(f"{csv_path}: needs a 'file' column naming each image")
        for row in reader:
            values = {k: (row.get(fields[k]) or "").strip() or None for k in ("title", "artist", "year") if k in fields}
            meta[row[key].strip()] = values
    return meta


def analysis_to_work(path, sha256: str, image: Image.Image, analysis, info: dict | None = None) -> NewWork:
    info = info or {}
    return NewWork(path=str(path), sha256=sha256, image=image, labels=analysis.labels, model=analysis.model,
                   embedding=analysis.embedding.numpy().astype(np.float32), psnr=analysis.psnr,
                   title=info.get("title"), artist=info.get("artist"), year=info.get("year"))


@dataclass
class Intake:
    """What every indexer does around its decoder, and the report it keeps."""

    gallery: Gallery
    root: Path | None = None
    meta: dict = field(default_factory=dict)
    report: IndexReport = field(default_factory=IndexReport)
    seen: set = field(default_factory=set)

    def is_new(self, sha: str) -> bool:
        """False (and counted as skipped) for a picture stored before or met earlier in this run."""
        if sha in self.seen or self.gallery.known(sha):
            self.report.skipped += 1
            return False
        self.seen.add(sha)
        return True

    def failed(self, message: str) -> None:
        self.report.errors.append(message)

    def works(self, files: list[tuple[Path, str, Image.Image]], analyses) -> list[NewWork]:
        """(path, sha256, picture) and its analysis -> the work to store, named from the metadata."""
        return [analysis_to_work(path.resolve(), sha, image, analysis, self._meta_for(path))
                for (path, sha, image), analysis in zip(files, analyses)]

    def store(self, works: list[NewWork], executor=None) -> None:
        """One transaction; a picture met twice within one batch is stored once."""
        added = self.gallery.add_batch(works, executor=executor) if works else []
        self.report.added += len(added)
        self.report.skipped += len(works) - len(added)

    def _meta_for(self, path: Path) -> dict:
        if self.root is None:
            return {}
        try:
            relative = str(path.relative_to(self.root))
        except ValueError:
            relative = path.name
        return self.meta.get(relative) or self.meta.get(path.name) or {}


def index_paths(gallery: Gallery, models, paths: list[Path], root: Path | None = None, meta: dict | None = None,
                batch_size: int = 32, progress=None, reconstruct: bool = False) -> IndexReport:
    """Add image files to the gallery in batches (one transaction each), skipping known hashes.

    `progress(n)` is called after each file with the number of files handled.
    Unreadable files are reported in the result, never fatal. The reconstruction (and its PSNR)
    is skipped unless asked for: the gallery never shows it, and it costs a fifth of the time.
    """
    intake = Intake(gallery, Path(root) if root else None, meta or {})
    batch: list[tuple[Path, str, Image.Image]] = []
    for path in map(Path, paths):
        try:
            if path.is_file() and path.stat().st_size > MAX_BYTES:
                raise ImageError(f"{path}: file is over the {MAX_BYTES // 2**20} MB limit", "too_big")
            sha = content_hash(path.read_bytes()) if path.is_file() else None
            if sha is None or intake.is_new(sha):   # not a file: the loader says why
                batch.append((path, sha, models.prepare(path, display_side=THUMB_SIDE)))  # the one safe loader
        except ImageError as e:
            intake.failed(str(e))
        except OSError as e:
            intake.failed(f"{path}: cannot read ({e.strerror or e})")
        if len(batch) >= batch_size:
            intake.store(intake.works(batch, models.analyze([b[2] for b in batch], reconstruct=reconstruct)))
            batch = []
        if progress:
            progress(1)
    if batch:
        intake.store(intake.works(batch, models.analyze([b[2] for b in batch], reconstruct=reconstruct)))
    return intake.report


def use_bulk(models, bulk: bool | None, reconstruct: bool) -> bool:
    """The bulk pipeline on a CUDA GPU unless told otherwise; never with a reconstruction, which
    needs the autoencoder that the bulk pipeline does not run."""
    wanted = bulk if bulk is not None else models.device.type == "cuda"
    return wanted and not reconstruct


def index(gallery: Gallery, models, paths: list[Path], *, root: Path | None = None, meta: dict | None = None,
          bulk: bool = False, batch_size: int | None = None, workers: int = 8, progress=None,
          reconstruct: bool = False) -> IndexReport:
    """index_paths, or with `bulk` the pipelined indexer (artlab.bulk), which plugs its decoder
    into the same Intake."""
    if bulk:
        from artlab.bulk import bulk_index

        return bulk_index(gallery, models, paths, root=root, meta=meta, batch_size=batch_size or 256,
                          workers=workers, progress=progress)
    return index_paths(gallery, models, paths, root=root, meta=meta, batch_size=batch_size or 32,
                       progress=progress, reconstruct=reconstruct)


def index_folder(gallery: Gallery, models, folder: str | Path, meta_csv: str | Path | None = None,
                 batch_size: int = 32, progress=None) -> IndexReport:
    folder = Path(folder)
    meta = read_meta(meta_csv) if meta_csv else {}
    return index_paths(gallery, models, list_images(folder), root=folder, meta=meta,
                       batch_size=batch_size, progress=progress)


def add_upload(gallery: Gallery, models, data: bytes, title: str | None = None, artist: str | None = None,
               year: str | None = None) -> tuple[int, bool]:
    """Add one uploaded picture (its bytes). Returns (the work's id, whether it was new).

    The copy kept is named by its decoded format, never by the upload's name (see keep_copy)."""
    sha = content_hash(data)
    existing = gallery.id_for(sha)
    if existing is not None:
        return existing, False
    image = models.prepare(data, display_side=THUMB_SIDE)
    analysis = models.analyze([image])[0]
    path = gallery.keep_copy(data, sha)
    gallery.add_batch([analysis_to_work(path, sha, image, analysis,
                                        {"title": title, "artist": artist, "year": year})])
    return gallery.id_for(sha), True


def refresh(gallery: Gallery, models, batch_size: int = 32, progress=None) -> IndexReport:
    """Re-analyse the works another classifier analysed (say, before an upgrade of the shipped
    weights), so labels and similar works come from `models` again. Each work is read from its
    original file, else from its thumbnail (320 px: as large as the classifier's input).
    `report.added` counts the works refreshed; works with neither file readable go to `errors`."""
    report = IndexReport()
    rows = gallery.other_model_works(models.model_id)
    for start in range(0, len(rows), batch_size):
        ids, images = [], []
        for row in rows[start:start + batch_size]:
            for source in (row["path"], gallery.thumb_path(row["sha256"])):
                try:
                    images.append(models.prepare(Path(source)))
                    ids.append(row["id"])
                    break
                except (ImageError, OSError):
                    continue
            else:
                report.errors.append(f"{row['path']}: neither the file nor its thumbnail can be read")
        gallery.update_analyses(list(zip(ids, models.analyze(images, reconstruct=False))))
        report.added += len(ids)
        if progress:
            progress(len(rows[start:start + batch_size]))
    return report
