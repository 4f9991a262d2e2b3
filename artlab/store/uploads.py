"""Safe intake of what visitors upload for fine-tuning: class images, zips of class folders, models.

A zip is checked entry by entry *before* anything is written: absolute paths,
`..` components (zip-slip), symlinks, encrypted entries and over-deep nesting refuse
the whole zip; the entry count and the total uncompressed size are capped (zip bombs:
a Train-tab session holds at most MAX_SESSION_BYTES), an entry larger than one image may
be (MAX_ENTRY_BYTES) is skipped before a byte of it is written, and the bytes actually
inflated are counted too, in case the header lies. Files that are not images are skipped
and listed; each extracted entry must load with the one image loader (artlab.images.load_image),
else it is removed and listed.

An uploaded model is only ever safetensors + a JSON card; pickles (.pt, .pth, .pkl,
.ckpt, .bin) and anything whose bytes look like a pickle are refused.
"""

import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from artlab.checkpoints import (
    CLASSIFIER_NAME,
    WeightsError,
    check_checkpoint,
    read_card,
)
from artlab.data.folders import IGNORED_FOLDERS, MAX_CLASSES, MAX_IMAGES, MAX_NAME_CHARS
from artlab.images import IMAGE_SUFFIXES, MAX_BYTES, ImageError, load_image
from artlab.inference.image import classifier_spec, load_classifier
from artlab.safe_text import escape_user_text

MAX_ZIP_FILES = MAX_IMAGES + 1000           # entries, including skipped ones
MAX_ZIP_BYTES = 2 * 1024 ** 3               # total uncompressed size of a model zip
MAX_SESSION_BYTES = 1024 ** 3               # all of one Train-tab visitor's images together
MAX_ENTRY_BYTES = MAX_BYTES                 # one image: what the image loader would read anyway
MAX_ZIP_DEPTH = 6                           # folder levels inside the zip
MAX_NAME_BYTES = 200                        # a class folder's name in UTF-8 (file systems allow 255)
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz"}
CHUNK = 1 << 20


class UploadError(ValueError):
    """An upload refused as a whole; str() is a one-line message for people."""


@dataclass
class ImportResult:
    classes: dict[str, list[Path]] = field(default_factory=dict)   # class name -> saved image files
    skipped: list[str] = field(default_factory=list)               # "name: reason"

    def counts(self) -> dict[str, int]:
        return {name: len(files) for name, files in self.classes.items()}


def class_name(name: str) -> str:
    """A class name usable as a folder name (no separators, no leading dot, no bidi or control
    characters: it is shown in tables and labels); UploadError if empty."""
    cleaned = "".join("_" if c in '/\\:*?"<>|\0' else c for c in escape_user_text(name, markup=False)
                      if not 0xD800 <= ord(c) <= 0xDFFF).strip(". ")   # lone surrogates cannot be file names
    if not cleaned:
        raise UploadError(f"{name!r}: a class needs a name")
    cleaned = cleaned[:MAX_NAME_CHARS]
    while len(cleaned.encode("utf-8")) > MAX_NAME_BYTES:   # 64 emoji are 256 bytes: too long for a folder
        cleaned = cleaned[:-1]
    return cleaned


def _check_entry(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if not path.parts or path.parts == ("/",):  # "" (a NUL-truncated name), "." or "./."
        raise UploadError(f"zip refused: an entry has no usable name ({info.filename!r})")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UploadError(f"zip refused: {info.filename!r} has an absolute path")
    if ".." in path.parts:
        raise UploadError(f"zip refused: {info.filename!r} points outside the zip (zip-slip)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadError(f"zip refused: {info.filename!r} is a symbolic link")
    if info.flag_bits & 0x1:
        raise UploadError(f"zip refused: {info.filename!r} is encrypted")
    if len(path.parts) > MAX_ZIP_DEPTH + 1:
        raise UploadError(f"zip refused: {info.filename!r} is nested more than {MAX_ZIP_DEPTH} folders deep")
    return path


def _files(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The entries that are not folders (ZipInfo.is_dir() fails on an empty name: fuzz-found)."""
    return [i for i in archive.infolist() if not i.filename.endswith("/")]


def _open_zip(zip_path: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UploadError(f"{Path(zip_path).name}: not a readable zip file ({e})") from None


def _common_root(paths: list[PurePosixPath]) -> int:
    """How many leading folders all entries share (a zip of one folder holding the class folders)."""
    depth = 0
    while (paths and len({p.parts[depth] for p in paths}) == 1 and all(len(p.parts) > depth + 1 for p in paths)
           and any(len(p.parts) > depth + 2 for p in paths)):
        depth += 1
    return depth


def import_zip(zip_path: str | Path, dest: str | Path, max_bytes: int = MAX_SESSION_BYTES,
               max_files: int = MAX_ZIP_FILES, max_entry_bytes: int = MAX_ENTRY_BYTES) -> ImportResult:
    """Extract the images of a zip of class folders into dest/<class>/; UploadError refuses it whole.

    `max_bytes`: what the zip may add in all (a Train-tab session passes what its cap has left);
    `max_entry_bytes`: one image. Sizes are checked from the zip's directory before anything is
    written, then counted as entries inflate; each entry must then load with the image loader.
    """
    dest = Path(dest)
    with _open_zip(zip_path) as archive:
        infos = _files(archive)
        if len(infos) > max_files:
            raise UploadError(f"zip refused: {len(infos)} files, over the cap of {max_files}")
        paths = [_check_entry(info) for info in infos]
        declared = sum(info.file_size for info in infos)
        if declared > max_bytes:
            raise UploadError(f"zip refused: {declared / 2**20:.0f} MB uncompressed, over the "
                              f"{max_bytes / 2**20:.0f} MB left for your images (possible zip bomb)")
        result, budget = ImportResult(), [max_bytes]
        skip_root = _common_root([p for p in paths if not _hidden(p)])
        for info, path in zip(infos, paths):
            if not _hidden(path):
                _import_entry(archive, info, path.parts[skip_root:], dest, result, budget, max_entry_bytes)
    if len(result.classes) > MAX_CLASSES:
        raise UploadError(f"zip refused: {len(result.classes)} class folders, more than the {MAX_CLASSES} allowed")
    return result


def _import_entry(archive, info: zipfile.ZipInfo, parts: tuple[str, ...], dest: Path, result: ImportResult,
                  budget: list[int], max_entry_bytes: int) -> None:
    """Extract one entry into its class folder if it is an image the loader reads; else list why not."""
    if len(parts) < 2:
        result.skipped.append(f"{info.filename}: not in a class folder")
        return
    suffix = PurePosixPath(parts[-1]).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        result.skipped.append(f"{info.filename}: not an image file")
        return
    if info.file_size > max_entry_bytes:    # refused from the directory: nothing is written
        result.skipped.append(f"{info.filename}: {info.file_size / 2**20:.0f} MB, over the "
                              f"{max_entry_bytes // 2**20} MB an image may take")
        return
    name = class_name(parts[0])
    saved = result.classes.get(name, [])
    target = dest / name / f"{len(saved):05d}{suffix}"
    _extract(archive, info, target, budget, max_entry_bytes)
    try:
        load_image(target, max_side=64)     # the one safe loader, as training will read it
    except ImageError as e:
        budget[0] += target.stat().st_size   # what is removed no longer counts
        target.unlink()
        result.skipped.append(f"{info.filename}: {str(e).split(': ', 1)[-1]}")
        return
    result.classes.setdefault(name, saved).append(target)


def _hidden(path: PurePosixPath) -> bool:
    return any(part.startswith(".") or part in IGNORED_FOLDERS for part in path.parts)


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: list[int],
             max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
    """Copy one entry, counting the bytes really inflated against its cap and the zip's remaining budget."""
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                budget[0] -= len(chunk)
                if budget[0] < 0 or written > max_entry_bytes:
                    raise UploadError("zip refused: it inflates past the size cap (possible zip bomb)")
                out.write(chunk)
    except UploadError:
        target.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
        target.unlink(missing_ok=True)
        raise UploadError(f"zip refused: {info.filename!r} cannot be extracted ({e})") from None


def folder_bytes(folder: str | Path) -> int:
    """The bytes of the files under `folder` (0 if absent): what a Train-tab session holds."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def add_images(files: list[str | Path], class_dir: str | Path, max_bytes: int = MAX_SESSION_BYTES) -> ImportResult:
    """Copy uploaded files into a class folder, keeping only those the image loader can read.

    `max_bytes`: what they may add in all (a Train-tab session passes what its cap has left)."""
    class_dir = Path(class_dir)
    class_dir.mkdir(parents=True, exist_ok=True)
    result = ImportResult()
    saved = result.classes.setdefault(class_dir.name, [])
    start = len(list(class_dir.iterdir()))
    for source in files:
        source = Path(source)
        try:
            load_image(source, max_side=64)
        except ImageError as e:
            result.skipped.append(f"{source.name}: {str(e).split(': ', 1)[-1]}")
            continue
        max_bytes -= source.stat().st_size
        if max_bytes < 0:
            result.skipped.append(f"{source.name}: over the {MAX_SESSION_BYTES // 2**20} MB your images may take")
            continue
        target = class_dir / f"{start + len(saved):05d}{source.suffix.lower() or '.img'}"
        shutil.copyfile(source, target)
        saved.append(target)
    return result


def import_model(upload: str | Path, dest: str | Path) -> dict:
    """Take an uploaded model (a zip of art_classifier.safetensors + .json) into `dest`; return its card.

    Only safetensors + a JSON card are accepted; a pickle in any guise is refused.
    """
    upload, dest = Path(upload), Path(dest)
    if upload.suffix.lower() in PICKLE_SUFFIXES:
        raise UploadError(f"{upload.name}: pickled models are refused (they can run code); "
                          f"upload a zip of {CLASSIFIER_NAME}.safetensors and {CLASSIFIER_NAME}.json")
    with open(upload, "rb") as f:
        magic = f.read(4)
    if magic[:1] == b"\x80":
        raise UploadError(f"{upload.name}: this is a pickle; only safetensors + a JSON card are ever loaded")
    if magic[:2] != b"PK":
        raise UploadError(f"{upload.name}: expected a zip of {CLASSIFIER_NAME}.safetensors and "
                          f"{CLASSIFIER_NAME}.json")
    wanted = {f"{CLASSIFIER_NAME}.safetensors", f"{CLASSIFIER_NAME}.json"}
    dest.mkdir(parents=True, exist_ok=True)
    with _open_zip(upload) as archive:
        infos = _files(archive)
        if len(infos) > 16:
            raise UploadError(f"{upload.name}: a model zip holds a handful of files, not {len(infos)}")
        budget = [MAX_ZIP_BYTES]
        for info in infos:
            path = _check_entry(info)
            if path.suffix.lower() in PICKLE_SUFFIXES:
                raise UploadError(f"{upload.name}: holds {path.name}, a pickle; only safetensors are ever loaded")
            if path.name in wanted:
                _extract(archive, info, dest / path.name, budget, MAX_ZIP_BYTES)
    missing = [name for name in wanted if not (dest / name).is_file()]
    if missing:
        raise UploadError(f"{upload.name}: missing {', '.join(sorted(missing))}")
    try:
        # The card first, by type and range: its numbers size the model that loading allocates.
        classifier_spec(read_card(dest / CLASSIFIER_NAME), f"{CLASSIFIER_NAME}.json")
        check_checkpoint(dest / CLASSIFIER_NAME)      # refuses pickles and corrupt files, reading no tensor
        _, card = load_classifier(dest, "cpu")        # the tensors must match the card
    except (WeightsError, KeyError, TypeError, ValueError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise UploadError(f"{upload.name}: not a usable ArtLab model ({str(e).splitlines()[0]})") from None
    return card
