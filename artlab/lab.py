"""A Lab: what the app, the HTTP API and MCP share, with no web framework in it.

It holds one model cache and one gallery, knows which model answers a visitor (their own,
the models directory's active one, or the app's), and gives ArtLab's answers:

    lab = Lab()
    look = lab.look(picture_bytes)          # labels, heat map, reconstruction, similar works
    look.to_json()                          # the JSON contract of `predict --json` plus similar and model
    lab.read("stormy sea at night")         # a text's labels, reconstruction and matching works
    lab.publish(model_folder, "curator")    # a visitor's fine-tuned model, active for everyone
"""

import logging
import os
import shutil
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from artlab import paths
from artlab.answers import look_json
from artlab.checkpoints import (
    AUTOENCODER_NAME,
    CLASSIFIER_NAME,
    TEXT_AUTOENCODER_NAME,
    TEXT_CLASSIFIER_NAME,
    Checkpoint,
    WeightsError,
    cards_in,
    resolve,
)
from artlab.device import pick_device
from artlab.files import atomic_folder
from artlab.images import ImageError, load_image
from artlab.indexing import add_upload
from artlab.inference.explain import OVERLAY_SIDE
from artlab.inference.image import Analysis, ArtModels, autoencoder_input
from artlab.memory import release_freed_memory
from artlab.store.gallery import THUMB_DIR, Gallery
from artlab.store.registry import Registry
from artlab.store.works import Work, content_hash

log = logging.getLogger(__name__)

MAX_OTHER_MODELS = 4          # visitors' and curators' models kept loaded beside the app's own
SIMILAR = 6                   # similar works shown beside an analysis


def _lower_priority() -> None:
    """Lower this thread's priority by ARTLAB_IMAGE_NICE (Linux: nice is per thread; elsewhere nothing)."""
    step = int(paths.number_setting("IMAGE_NICE", 10))
    if step <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + step))
    except OSError as e:
        log.info("could not lower the image thread's priority: %s", e)


@dataclass
class Look:
    """What ArtLab says about one picture: its analysis, the picture as the autoencoder saw it,
    the gallery's most similar works, and which model answered."""

    analysis: Analysis
    seen: Image.Image                                  # the autoencoder's input (128 px, letterboxed)
    similar: list[tuple[Work, float]] = field(default_factory=list)
    model_key: str | None = None                       # "name/vN" when a model of the models directory answered
    picture: Image.Image | None = None                 # the picture as analysed, the heat map's size

    def to_json(self) -> dict:
        """/predict's answer: one line of `predict --json` (labels as [id, probability], best first;
        psnr), plus the similar works (id, title, score) and the model that answered (answers.look_json)."""
        return look_json(self)


@dataclass
class Lab:
    weights: str | None = None            # None: $ARTLAB_WEIGHTS or the shipped weights
    models_dir: str | None = None         # fine-tuned models (store.registry); None: $ARTLAB_MODELS or default
    gallery_dir: str | None = None        # None: $ARTLAB_GALLERY or the user's data dir
    device: str | None = None
    _models: OrderedDict = field(default_factory=OrderedDict)
    _same_embedding: dict = field(default_factory=dict)
    _text: object = None
    _text_error: str | None = None
    _gallery: Gallery | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _image_worker: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ the image thread

    def on_image_thread(self, fn, *args, **kwargs):
        """Run `fn` on the one thread that runs the image models, at a lower priority (ARTLAB_IMAGE_NICE):
        under load a painting's analysis takes the 2 cores for tens of milliseconds at a time, and a
        title (milliseconds of work) or a page request would otherwise wait behind it. ONNX Runtime's
        threads are made by the thread that opens a session, and inherit its priority: models are
        loaded here too. Reentrant: called from that thread, it just runs."""
        with self._lock:
            if self._image_worker is None:
                self._image_worker = ThreadPoolExecutor(1, "artlab-images", initializer=_lower_priority)
        if threading.current_thread().name.startswith("artlab-images"):
            return fn(*args, **kwargs)
        return self._image_worker.submit(fn, *args, **kwargs).result()

    # ------------------------------------------------------------------ models

    def models(self, weights: str | None = None) -> ArtModels:
        """The ArtModels for `weights` (default: the app's), loaded on first use and kept.

        A fine-tuned folder without an autoencoder shares the app's one (not whatever
        $ARTLAB_WEIGHTS names). Besides the app's models, the latest MAX_OTHER_MODELS are kept.
        """
        key, own = str(weights or self.weights or ""), str(self.weights or "")
        shared = None
        if key != own and not resolve(weights, AUTOENCODER_NAME).exists():
            shared = self.models()
        with self._lock:
            if key not in self._models:
                log.info("loading image models from %s", key or "the default weights")
                models = ArtModels(weights or self.weights, self.device, autoencoder=shared is None)
                if shared is not None:
                    models.share_autoencoder(shared)
                others = [k for k in self._models if k != own]
                for old in others[:max(0, len(others) - MAX_OTHER_MODELS + 1)]:
                    del self._models[old]
                self._models[key] = models
            return self._models[key]

    def forget(self, folder: str | Path) -> None:
        """Drop the loaded models of every weights folder inside `folder` (a visitor's session that ended)."""
        prefix = str(folder)
        with self._lock:
            for key in [k for k in self._models if k.startswith(prefix)]:
                del self._models[key]
                self._same_embedding.pop(key, None)

    def artwork_weights(self, visitor_weights: str | None = None) -> str | None:
        """The model that answers a visitor: their own (Train tab, "for me") while it is still
        there (see `still_there`), else the models directory's active one (`python -m artlab models
        activate`, or a curator's "for everyone"), else the app's. Read on every request, so an
        activation needs no restart."""
        if visitor_weights and self.still_there(visitor_weights):
            return str(visitor_weights)
        active = Registry(self.models_dir).active_path()
        return str(active) if active else self.weights

    @staticmethod
    def still_there(weights) -> bool:
        """Whether a visitor's model folder still holds a classifier and its card (a Train-tab
        session that started over, or ended, has deleted it)."""
        weights_file = resolve(weights, CLASSIFIER_NAME)
        return weights_file.is_file() and weights_file.with_suffix(".json").is_file()

    def model_key(self, weights) -> str | None:
        """"name/vN" when `weights` is a model of the models directory, else None."""
        root = Registry(self.models_dir).root
        try:
            return Path(weights).resolve().relative_to(root.resolve()).as_posix() if weights else None
        except ValueError:
            return None

    def embeds_like_gallery(self, weights) -> bool:
        """Whether `weights`' embeddings can be compared with the gallery's, which the app's model made.

        Only a model fine-tuned on its head alone (its card says so) from the app's model has the
        same backbone, texture branch and neck; their weights are compared (to fp16 rounding) to
        rule out another base (a model fine-tuned from an earlier shipped version may share the
        neck but not the backbone). Any other model's similar works are found with the app's model.
        """
        key = str(weights or self.weights or "")
        if key == str(self.weights or ""):
            return True
        if key not in self._same_embedding:
            head_only = self.models(weights).card.get("training", {}).get("depth") == "head"
            # The stored tensors, not the loaded ones: loading folds BatchNorm and rounds to bf16.
            theirs = Checkpoint.find(weights, CLASSIFIER_NAME).tensors()
            ours = Checkpoint.find(self.weights, CLASSIFIER_NAME).tensors()
            shared = [(t, ours.get(name)) for name, t in theirs.items() if not name.startswith("heads.")]
            self._same_embedding[key] = head_only and bool(shared) and all(
                b is not None and a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=2e-3, atol=1e-4)
                for a, b in shared)
        return self._same_embedding[key]

    def text_models(self):
        """(TextModels or None, message): the text side is optional; its absence is explained."""
        with self._lock:
            if self._text is None and self._text_error is None:
                from artlab.inference.text import TextModels
                try:
                    self._text = TextModels(self.weights, self.device)
                except (WeightsError, OSError, KeyError, ValueError) as e:
                    self._text_error = f"The text models could not be loaded: {e}"
            return self._text, self._text_error

    def gallery(self) -> Gallery:
        with self._lock:
            if self._gallery is None:
                self._gallery = Gallery(self.gallery_dir)
            return self._gallery

    def preload(self) -> threading.Thread:
        """Load models in the background so the first visitor does not wait for them."""
        def work():
            try:
                self.gallery()
                self.on_image_thread(self.models)     # its ONNX Runtime threads are made there
                self.text_models()
            except Exception as e:  # noqa: BLE001 - reported on first use with the same error
                log.warning("preloading models failed: %s", e)
        thread = threading.Thread(target=work, name="artlab-preload", daemon=True)
        thread.start()
        return thread

    def device_name(self) -> str:
        device = pick_device(self.device)
        if device.type == "cuda":
            return f"GPU ({torch.cuda.get_device_name(device)})"
        return {"mps": "Apple GPU (MPS)", "cpu": f"CPU ({os.cpu_count()} cores)"}.get(device.type, str(device))

    def public_folders(self) -> list[str]:
        """The only folders a web server may serve files from: the gallery's thumbnails (every file
        there is a <sha256>.jpg the gallery wrote) and ArtLab's assets."""
        return [str(paths.gallery_dir(self.gallery_dir) / THUMB_DIR), str(paths.ASSETS_DIR)]

    # ------------------------------------------------------------------ answers

    def look(self, source, visitor_weights: str | None = None, explain: bool = True,
             similar: int = SIMILAR) -> Look:
        """Analyse one picture (bytes or a path) with the model that answers this visitor, and
        find the gallery's most similar works. Raises ImageError (bad picture), WeightsError."""
        return self.on_image_thread(self._look, source, visitor_weights, explain, similar)

    def _look(self, source, visitor_weights, explain, similar) -> Look:
        weights = self.artwork_weights(visitor_weights)
        models = self.models(weights)
        # The heat map is laid over the picture: decode it that large. Without one, decode it as
        # `predict` does, so the API and the CLI see the same pixels.
        image = models.prepare(source, display_side=OVERLAY_SIDE if explain else 0)
        analysis = models.analyze([image], explain=explain)[0]
        app_models = self.models()   # the gallery's embeddings come from the app's model
        embedding = analysis.embedding
        if not self.embeds_like_gallery(weights):
            embedding = app_models.analyze([image], reconstruct=False)[0].embedding
        exclude = content_hash(source) if isinstance(source, bytes) else None
        pairs = self.gallery().similar(embedding.numpy(), similar, exclude_sha=exclude, model=app_models.model_id)
        look = Look(analysis, autoencoder_input(image), pairs, self.model_key(weights), picture=image)
        # A kiosk runs for weeks: hand the analysis's freed buffers back to the OS (a few ms), so the
        # app's memory stays flat instead of settling wherever the allocator's fragmentation takes it.
        release_freed_memory()
        return look

    def work(self, work_id: int, similar: int = SIMILAR) -> tuple[Work, Image.Image, list[tuple[Work, float]]] | None:
        """A gallery work, its picture (the original, else the thumbnail we kept) and its similar works."""
        found = self.similar_to(work_id, similar)
        if found is None:
            return None
        work, pairs = found
        try:
            picture = load_image(work.path, max_side=1024)
        except ImageError:
            picture = load_image(work.thumb)   # the original moved away: show what we kept
        return work, picture, pairs

    def similar_to(self, work_id: int, similar: int = SIMILAR) -> tuple[Work, list[tuple[Work, float]]] | None:
        """A gallery work and its most similar works by its stored embedding, compared only with
        works the same model analysed; None when there is no such work."""
        gallery = self.gallery()
        work = gallery.get(work_id)
        if work is None:
            return None
        return work, gallery.similar(gallery.embedding_of(work.id), similar, exclude_id=work.id, model=work.model)

    def read(self, text: str, similar: int = SIMILAR) -> tuple[dict, list[tuple[Work, float]]]:
        """A text's labels and reconstruction (the `predict-text --json` record) and the gallery
        works whose labels agree best. Raises WeightsError when the text models are missing."""
        models, problem = self.text_models()
        if models is None:
            raise WeightsError(problem)
        record = models.analyze([text or ""])[0]
        if "error" in record:
            return record, []
        probs = {head: dict(record[head]) for head in ("style", "subject") if head in record}
        return record, self.gallery().match_labels(probs, similar)

    def add(self, data: bytes, title: str | None = None, artist: str | None = None,
            year: str | None = None) -> tuple[int, bool]:
        """Add an uploaded picture to the gallery, analysed by the app's model (the gallery's labels
        and embeddings all come from it). Returns (the work's id, whether it is new)."""
        return self.on_image_thread(lambda: add_upload(self.gallery(), self.models(), data, title=title,
                                                       artist=artist, year=year))

    def browse(self, style: str | None = None, subject: str | None = None, query: str | None = None,
               limit: int = 60, offset: int = 0) -> tuple[list[Work], int, int]:
        """Works matching the filters (newest first), the gallery's size, and how many of its works an
        earlier model analysed (left out of similar works until `index --refresh` re-analyses them)."""
        gallery = self.gallery()
        works = gallery.browse(style=style or None, subject=subject or None, query=query, limit=limit, offset=offset)
        total = gallery.count()
        stale = gallery.other_model_count(self.models().model_id) if total else 0
        return works, total, stale

    def model_cards(self) -> dict[str, dict]:
        """The cards of the app's image and text models, for the About tab."""
        names = (CLASSIFIER_NAME, AUTOENCODER_NAME, TEXT_CLASSIFIER_NAME, TEXT_AUTOENCODER_NAME)
        return cards_in(self.weights, names)

    def walk(self, a, b, steps: int, weights: str | None = None) -> list[Image.Image]:
        """Pictures along the autoencoder's latent line from a to b (the Create tab)."""
        def walk():
            models = self.models(weights)
            return models.morph(models.prepare(a), models.prepare(b), steps)

        return self.on_image_thread(walk)

    def publish(self, model_folder: str | Path, name: str) -> str:
        """Copy a fine-tuned model folder into the models directory as the next version of `name`
        and make it the active model for everyone. Returns its key ("name/vN")."""
        registry = Registry(self.models_dir)
        target = registry.next_path(name or "curator")
        with atomic_folder(target) as staging:        # a half-copied model is never listed
            shutil.copytree(model_folder, staging, dirs_exist_ok=True)
        return registry.activate(f"{target.parent.name}/{target.name}")
