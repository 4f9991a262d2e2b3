"""A visitor's fine-tuning session: their class folders, the checks before training, training
itself and what they do with the model. No web framework here; the Train tab (artlab.ui.train_tab)
only shows what this module says.

    session = CurationSession()                 # a private folder under the app's own (workdirs)
    session.add_class("workshop")
    session.add_images(["a.jpg", "b.png"], "workshop")
    session.add_zip("classes.zip")              # one folder per class
    session.problems()                          # [] when ready to train
    for event in session.train(base_weights, FinetuneConfig(epochs=20)):
        ...                                     # Progress, Epoch, then Done (with the card) or Failed
    try_model(lab, session.model, picture_bytes)
    export_zip(session.model)                   # the model folder and its ONNX export, zipped
    session.close()                             # the visitor left: their images and models go

Their images may take MAX_SESSION_BYTES in all (a shared disk); only one model trains at a time
in the whole process (the cores, or the GPU, are shared too).
"""

import importlib.util
import logging
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue

from artlab.checkpoints import WeightsError
from artlab.data.folders import MAX_CLASSES, MAX_IMAGES, MIN_CLASSES, MIN_PER_CLASS
from artlab.files import atomic_write
from artlab.images import ImageError, list_images
from artlab.store.uploads import (
    MAX_SESSION_BYTES,
    ImportResult,
    add_images,
    class_name,
    folder_bytes,
    import_zip,
)
from artlab.training.finetune import (
    HEAD,
    FinetuneConfig,
    FinetuneError,
    finetune,
    imbalance_warning,
)
from artlab.workdirs import process_dir

log = logging.getLogger(__name__)

FOLDER_PREFIX = "artlab-train-"      # workdirs sweeps folders of this name left by a killed process
COMMAND = "ArtLab Train tab"         # what a model's card says made it
_busy = threading.Lock()             # held while any visitor's model trains: one at a time
IMBALANCE_RATIO = 5.0                # the largest class over this many times the smallest: a warning
PROBLEMS = {
    "min_classes": "Add at least {min} classes.",
    "max_classes": "{n} classes: more than the {max} allowed; remove some.",
    "few": "Too few images (at least {per} per class): {classes}.",
    "too_many": "{n} images: over the cap of {max}; remove some.",
    "imbalance": "Class imbalance over {ratio}:1 ({big}: {n_big}, {small}: {n_small}); "
                 "the model will lean towards the bigger classes.",
}


def training_busy() -> bool:
    """Whether a model is training now (a new run would wait for it)."""
    return _busy.locked()


# ------------------------------------------------------------------ training events

@dataclass
class Progress:
    fraction: float
    text: str


@dataclass
class Epoch:
    record: dict          # finetune's epoch record: stage, epoch, train_loss, val_loss, val_accuracy


@dataclass
class Done:
    card: dict            # the new model's card (metrics, history, whether the visitor stopped it)
    model: str            # its folder


@dataclass
class Failed:
    message: str          # one line for the visitor (plain text: it may name their classes)


TrainingEvent = Progress | Epoch | Done | Failed


# ------------------------------------------------------------------ the session

class CurationSession:
    """One visitor's classes and models, in a private folder deleted by `close`."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=process_dir()))
        self.classes_dir.mkdir(parents=True, exist_ok=True)
        self.model: str | None = None              # the folder of the latest trained model
        self.runs = 0                              # training runs so far (each writes models/runN)
        self._stop: threading.Event | None = None  # set by `stop`, while a run is under way

    @property
    def classes_dir(self) -> Path:
        return self.folder / "classes"

    def close(self) -> None:
        """Forget everything: the visitor's images and models."""
        if self._stop is not None:
            self._stop.set()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -------------------------------------------------------------- data

    def room_left(self) -> int:
        """Bytes this visitor's images may still take (MAX_SESSION_BYTES in all: a shared disk)."""
        return max(0, MAX_SESSION_BYTES - folder_bytes(self.classes_dir))

    def counts(self) -> dict[str, int]:
        """Images per class, by class name."""
        return {p.name: len(list_images(p)) for p in sorted(self.classes_dir.iterdir()) if p.is_dir()}

    def add_class(self, name: str) -> str:
        """Make a class folder; return the name it got (cleaned). UploadError for an unusable name."""
        folder = self.classes_dir / class_name(name or "")
        folder.mkdir(exist_ok=True)
        return folder.name

    def add_images(self, files: list[str | Path], target: str) -> ImportResult:
        """Copy uploaded images into class `target` (made if new); the unreadable are listed as skipped."""
        return add_images(files, self.classes_dir / class_name(target), max_bytes=self.room_left())

    def add_zip(self, upload: str | Path) -> ImportResult:
        """Add the images of a zip with a folder per class; UploadError refuses it whole.

        The zip is extracted into a staging folder first (uploads.import_zip checks every entry),
        then its files join the class folders under new names, so they never overwrite earlier ones.
        """
        staging = self.folder / f"zip-{time.time_ns()}"
        try:
            result = import_zip(upload, staging, max_bytes=self.room_left())
            for name, files in result.classes.items():
                result.classes[name] = self._move_into(self.classes_dir / name, files)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return result

    @staticmethod
    def _move_into(target: Path, files: list[Path]) -> list[Path]:
        target.mkdir(exist_ok=True)
        start = len(list(target.iterdir()))
        moved = []
        for i, path in enumerate(files):
            moved.append(Path(shutil.move(path, target / f"z{start + i:05d}{path.suffix}")))
        return moved

    def checks(self) -> list[tuple[str, dict]]:
        """What stops (or spoils) training, as (key, values) for a caller that words it itself (the
        app, in the visitor's language; `problems` words them in English); [] when ready.
        Keys: min_classes, max_classes, few, too_many, imbalance."""
        counts = self.counts()
        checks = []
        if len(counts) < MIN_CLASSES:
            checks.append(("min_classes", {"min": MIN_CLASSES}))
        if len(counts) > MAX_CLASSES:
            checks.append(("max_classes", {"n": len(counts), "max": MAX_CLASSES}))
        few = [f"{name} ({n})" for name, n in counts.items() if n < MIN_PER_CLASS]
        if few:
            checks.append(("few", {"per": MIN_PER_CLASS, "classes": ", ".join(few)}))
        if sum(counts.values()) > MAX_IMAGES:
            checks.append(("too_many", {"n": sum(counts.values()), "max": MAX_IMAGES}))
        if imbalance_warning(counts, IMBALANCE_RATIO):
            big, small = max(counts, key=counts.get), min(counts, key=counts.get)
            checks.append(("imbalance", {"ratio": f"{IMBALANCE_RATIO:.0f}", "big": big, "n_big": counts[big],
                                         "small": small, "n_small": counts[small]}))
        return checks

    def problems(self) -> list[str]:
        """What stops (or spoils) training on the classes as they are, as English sentences; [] when ready."""
        return [PROBLEMS[key].format(**values) for key, values in self.checks()]

    # -------------------------------------------------------------- training

    def train(self, base: str | None, config: FinetuneConfig) -> Iterator[TrainingEvent]:
        """Fine-tune `base` on the classes, in a thread; yield its events until Done or Failed.

        Runs wait for one another (one at a time). Closing the generator (the visitor left) stops
        the run at its next step, as `stop` does.
        """
        stop = self._stop = threading.Event()
        self.runs += 1
        out = self.folder / "models" / f"run{self.runs}"
        events: Queue = Queue()
        worker = threading.Thread(target=_run, args=(self.classes_dir, out, base, config, stop, events.put),
                                  name=f"artlab-finetune-{self.folder.name}", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    event = events.get(timeout=0.5)
                except Empty:
                    if worker.is_alive():
                        continue
                    event = events.get_nowait() if not events.empty() else Failed("training ended unexpectedly")
                if isinstance(event, Done):
                    self.model = event.model
                yield event
                if isinstance(event, (Done, Failed)):
                    return
        finally:
            stop.set()               # a visitor who leaves mid-training frees the trainer at the next step
            self._stop = None

    def stop(self) -> bool:
        """Ask the running training to stop after its current step (the best model so far is kept);
        False when nothing is training."""
        if self._stop is None:
            return False
        self._stop.set()
        return True


def _run(classes_dir: Path, out: Path, base, config: FinetuneConfig, stop: threading.Event,
         send: Callable[[TrainingEvent], None]) -> None:
    """The training thread: wait for the trainer, fine-tune, send the end as Done or Failed."""
    with _busy:
        if stop.is_set():            # the visitor left while their run was queued
            send(Failed("stopped before training started"))
            return
        try:
            card = finetune(classes_dir, out, base=base, config=config, should_stop=stop,
                            on_epoch=lambda record: send(Epoch(record)),
                            progress=lambda fraction, text: send(Progress(fraction, text)),
                            command=COMMAND)
            send(Done(card, str(out)))
        except (FinetuneError, WeightsError, ImageError) as e:
            send(Failed(_without_folder(str(e), classes_dir)))
        except Exception as e:  # the visitor gets a message, the log the trace
            log.exception("fine-tuning failed")
            send(Failed(_without_folder(f"training failed: {e}", classes_dir)))


def _without_folder(message: str, classes_dir: Path) -> str:
    """A message for the visitor without the server's folders (finetune names the data folder)."""
    return message.replace(str(classes_dir), "your classes").replace(str(classes_dir.parent), "your session")


# ------------------------------------------------------------------ using a trained model

def try_model(lab, model_folder: str, picture: bytes) -> dict[str, float]:
    """A trained model's probabilities for one picture, by class name (the lab's one model cache).

    The bytes, not a path: a message about a bad picture then names "upload", never a server folder.
    Raises ImageError for a picture that cannot be read.
    """
    models = lab.models(model_folder)
    analysis = models.analyze([models.prepare(picture)], reconstruct=False)[0]
    return {name: float(p) for name, p in analysis.labels[HEAD]}


def onnx_available() -> bool:
    """Whether torch's ONNX exporter can run here: it needs the `onnx` package (requirements-dev.txt)."""
    return importlib.util.find_spec("onnx") is not None


def export_zip(model_folder: str | Path) -> tuple[Path, str | None]:
    """A zip of the model folder (safetensors + card) and, where `onnx` is installed, its ONNX
    export as model.onnx, beside the folder. Returns (the zip, what became of ONNX: None when it is
    in the zip, "unavailable" without the onnx package, else why the export failed): without it
    the zip still holds the safetensors and the card, which are worth downloading."""
    folder = Path(model_folder)
    onnx_path = folder.parent / f"{folder.name}.onnx"
    onnx_problem = None if onnx_available() else "unavailable"
    try:
        if onnx_problem is None and not onnx_path.exists():
            from artlab.inference.export import (
                export_onnx,  # torch.onnx: only when asked for
            )

            export_onnx(folder, onnx_path)
    except Exception as e:  # noqa: BLE001 - any exporter failure leaves the rest downloadable
        log.warning("ONNX export failed: %s", e)
        onnx_problem = str(e)

    def write(tmp: Path):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, path.name)
            if onnx_problem is None and onnx_path.exists():
                archive.write(onnx_path, "model.onnx")

    target = folder.parent / f"artlab-model-{folder.name}.zip"
    return atomic_write(target, write, durable=False), onnx_problem
