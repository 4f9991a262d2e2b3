"""Which engine runs the image models, and the ONNX Runtime one, which needs no torch.

On a CPU the classifier and the autoencoder run in ONNX Runtime, in fp32, with PyTorch fp32's answers.
Why (README, "Engine and precision"; 2-core Xeon): an analysis costs less than in PyTorch fp32, about
what PyTorch bf16 costs where the CPU has bf16, and less with Grad-CAM, which comes from the same run;
and `predict` then never imports torch (2.5 s and 500 MB of the CUDA build), which halves it against a
ResNet-50 script. On a GPU the models run in PyTorch. `ARTLAB_ENGINE=torch|onnx` forces one (`onnx`
always runs on the CPU); forcing `ARTLAB_PRECISION=bf16` means PyTorch, the one engine that computes in bf16.

The ONNX files are made once from the shipped (or given) safetensors, the first time a model is used
(about 3 s), and kept under `<user data>/onnx` (ARTLAB_ONNX_CACHE), keyed by the weights' digest and card;
nothing is downloaded. `OnnxArtModels` has ArtModels' `prepare` and `analyze`; `predict` uses it directly,
and ArtModels runs every CPU analysis through it: the app, `index`, `evaluate` and the benchmarks get the
very same answers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from artlab import paths
from artlab.checkpoints import (
    AUTOENCODER_NAME,
    CLASSIFIER_NAME,
    Checkpoint,
    WeightsError,
    check_checkpoint,
)
from artlab.images import denormalize, letterbox, load_image, normalize
from artlab.inference.calibration import Calibration, calibration_for

log = logging.getLogger(__name__)

ENGINES = ("torch", "onnx")
AE_SIZE = 128                   # the autoencoder's input side (artlab.models.autoencoder.IMAGE_SIZE)
EXPORT_FORMAT = 2               # bump when the exported graphs change: the cached files are remade
CAM_OUTPUTS = ("features", "cam_weights")   # the classifier graph's outputs for Grad-CAM (export.CAM_HEAD)
MAX_CACHED = 16                 # ONNX files kept (18 MB a classifier, 8 MB an autoencoder)
# Pictures per ONNX Runtime run: on a CPU a larger batch is no faster, and its activations stay in
# ONNX Runtime's memory arena (16 pictures at 320 px with their mirror images: 1 GB of RSS; one: 180 MB).
RUN_ROWS = {"classifier": 1, "autoencoder": 8}


def have_onnxruntime() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _may_have_gpu() -> bool:
    """Whether a GPU might be there (then torch is asked); False means the CPU for certain."""
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    return apple or os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/kfd")


def engine_for(device=None) -> str:
    """"onnx" or "torch" for models on `device` (a torch.device, a name, or None: the best available).

    ARTLAB_ENGINE=torch|onnx forces it; auto: ONNX Runtime on the CPU where it is installed (and bf16
    is not forced), PyTorch elsewhere. Decided without importing torch where there is surely no GPU.
    """
    choice = (paths.setting("ENGINE", "auto") or "auto").lower()
    if choice not in ("auto", *ENGINES):
        raise ValueError(f"ARTLAB_ENGINE={choice!r}: use auto, torch or onnx")
    if choice == "onnx" and not have_onnxruntime():
        raise ValueError("ARTLAB_ENGINE=onnx, but onnxruntime is not installed (pip install onnxruntime)")
    if choice != "auto":
        return choice
    if not have_onnxruntime() or (paths.setting("PRECISION") or "").lower() in ("bf16", "bfloat16"):
        return "torch"
    name = str(device or paths.setting("DEVICE") or "")
    if not name:
        if not _may_have_gpu():
            return "onnx"
        from artlab.device import pick_device

        name = pick_device().type
    return "onnx" if name.split(":")[0] == "cpu" else "torch"


# ------------------------------------------------------------------ the ONNX files

def onnx_file(checkpoint: Checkpoint) -> Path:
    """Where the ONNX form of `checkpoint` is kept: named by its digest, card and export format."""
    key = json.dumps([checkpoint.digest, checkpoint.card, EXPORT_FORMAT], sort_keys=True, default=str)
    return paths.onnx_cache_dir() / f"{checkpoint.name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.onnx"


def ensure_onnx(checkpoint: Checkpoint) -> Path:
    """The ONNX file of `checkpoint`, exported (with torch, once) if it is not there yet.

    The weights file is checked first (a missing, truncated or foreign file is a WeightsError naming
    it, as with torch); its card was checked by the export that made the file, the card being part
    of the file's name."""
    check_checkpoint(checkpoint.path)
    path = onnx_file(checkpoint)
    if not path.is_file():
        from artlab.inference.export import (
            export_for_engine,  # torch: only when a file is missing
        )

        log.info("making %s from %s (once)", path, checkpoint.path)
        export_for_engine(checkpoint, path)
        _prune(path.parent, keep=MAX_CACHED)
    else:
        os.utime(path)   # recently used: pruned last
    return path


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the `keep` most recently used files (visitors' fine-tuned models come and go).
    A running session has read its file already."""
    files = sorted(folder.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)


def threads() -> int:
    """As many threads as the process may use (torch's default too)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:          # macOS, Windows
        return max(1, os.cpu_count() or 1)


def session(path: Path):
    """An ONNX Runtime CPU session. Its threads sleep between runs instead of spinning, so they
    leave the cores to whatever else runs (the app's text models, the next picture's decoding)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads(), 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ answers

@dataclass
class Analysis:
    """Everything ArtLab says about one image."""

    labels: dict[str, list[tuple[str, float]]]      # head -> [(label, probability)], best first
    embedding: object                               # torch.Tensor from ArtModels; a NumPy array from OnnxArtModels
    psnr: float | None = None
    reconstruction: Image.Image | None = None
    heatmap: Image.Image | None = None                # Grad-CAM of the top style over the image
    extra: dict = field(default_factory=dict)
    model: str | None = None                          # which classifier answered (ArtModels.model_id)
    unsure: bool = False                              # not like the paintings it learned from (calibration)
    # As JSON: artlab.answers.picture_json (the one builder of `predict --json` and /predict).


def ranked(probs: dict[str, np.ndarray], labels: dict[str, tuple], model_id: str | None) -> list[Analysis]:
    """One Analysis per row: each head's labels, best first (a stable sort: ties keep the labels'
    order), the embedding, and whether the model is unsure (probs["unsure"], from Calibration.apply).
    Both engines rank here."""
    order = {head: np.argsort(-probs[head], axis=1, kind="stable") for head in labels}
    unsure = probs.get("unsure", np.zeros(len(probs["embedding"]), bool))
    return [Analysis({head: [(labels[head][j], float(probs[head][i, j])) for j in order[head][i]] for head in labels},
                     probs["embedding"][i].copy(), model=model_id, unsure=bool(unsure[i]))
            for i in range(len(probs["embedding"]))]


def mirror_average(out: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first n rows averaged with their mirror images (rows n..2n): probabilities averaged,
    embeddings summed and L2-normalised (as torch's F.normalize, eps 1e-12)."""
    merged = {k: (v[:n] + v[n:]) / np.float32(2) for k, v in out.items() if k not in ("embedding", "features")}
    embedding = out["embedding"][:n] + out["embedding"][n:]
    merged["embedding"] = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    return merged


def grad_cam(features: np.ndarray, cam_weights: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (N x h x w, each scaled to [0, 1]) for class top[i] of the explained head, from the
    graph's last feature map and closed-form gradients (ArtClassifier.forward_with_cam): what
    explain.cam_for computes with autograd, without a second pass."""
    weights = cam_weights[np.arange(len(top)), top] / np.float32(features.shape[2] * features.shape[3])
    cam = np.maximum(np.einsum("nc,nchw->nhw", weights, features), 0)
    return cam / np.maximum(cam.reshape(len(cam), -1).max(1), 1e-8)[:, None, None]


def psnr(reconstruction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB for images in [-1, 1]: artlab.models.autoencoder.psnr, in NumPy."""
    mse = np.square((reconstruction - target) / np.float32(2)).reshape(len(target), -1).mean(1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-10))


def pixels(images: list[Image.Image], side: int, resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """Pictures letterboxed to side x side, N x 3 x side x side in [-1, 1] (images.normalize)."""
    batch = np.stack([np.asarray(letterbox(im, side, resample), dtype=np.uint8) for im in images])
    return np.ascontiguousarray(normalize(batch).transpose(0, 3, 1, 2))


# ------------------------------------------------------------------ the models

def autoencoder_checkpoint(classifier: Checkpoint, weights) -> Checkpoint | None:
    """The autoencoder that goes with a classifier: the one beside it, else (a curator's
    fine-tuned folder holds none) the shipped one, else None (labels still work, no psnr)."""
    try:
        return Checkpoint.find(classifier, AUTOENCODER_NAME)
    except WeightsError:
        if weights is None:
            raise
    try:
        return Checkpoint.find(None, AUTOENCODER_NAME)
    except WeightsError as e:
        log.warning("no autoencoder: %s; analysing without reconstruction", e)
        return None


class OnnxArtModels:
    """The image models in ONNX Runtime, loaded once. Thread-safe: one analysis at a time."""

    engine, precision = "onnx", "fp32"

    def __init__(self, weights=None, autoencoder: bool = True, tta: bool = True):
        self.checkpoint = Checkpoint.find(weights, CLASSIFIER_NAME)
        self.classifier = session(ensure_onnx(self.checkpoint))    # first: it checks the files and the card
        self.card = self.checkpoint.card
        self.labels = {head: tuple(names) for head, names in self.card["labels"].items()}
        self.cam_head = "style" if "style" in self.labels else next(iter(self.labels))   # as export.CAM_HEAD
        self.calibration = calibration_for(self.checkpoint)
        self.model_id = self.checkpoint.digest
        self.input_size = int(self.card["input_size"])
        self.tta = tta
        self.autoencoder = None
        if autoencoder and (found := autoencoder_checkpoint(self.checkpoint, weights)) is not None:
            self.autoencoder = session(ensure_onnx(found))
        self.lock = threading.Lock()

    def decode_side(self, display_side: int = 0) -> int:
        return max(self.input_size, AE_SIZE, display_side)

    def prepare(self, source, display_side: int = 0) -> Image.Image:
        """Load (path, bytes, PIL) through the one safe loader, decoded only as large as needed."""
        return load_image(source, max_side=self.decode_side(display_side))

    def probabilities(self, x: np.ndarray, tta: bool | None = None, explain: bool = False,
                      calibrated: bool = True, pooled: bool = False) -> dict[str, np.ndarray]:
        """Softmax per head and the embedding for a batch in [-1, 1] at input_size, calibrated (with
        "unsure") as the card says; with tta the mirror image rides in the same run and the two are
        averaged. With `explain`, also "cam": the Grad-CAM map of each picture (not its mirror) for
        the top class of `cam_head`, from the same run. `calibrated=False, pooled=True`: the raw
        outputs and the pooled feature map, which `calibrate` fits the calibration on."""
        tta = self.tta if tta is None else tta
        names = [o.name for o in self.classifier.get_outputs() if o.name not in CAM_OUTPUTS]
        calibration = self.calibration if calibrated else Calibration()
        pooled = pooled or "pooled" in calibration.needs      # the unsure rule reads the pooled feature map
        wanted = names + (list(CAM_OUTPUTS) if explain else ["features"] if pooled else [])
        parts = []
        for start in range(0, len(x), RUN_ROWS["classifier"]):
            rows = np.ascontiguousarray(x[start:start + RUN_ROWS["classifier"]], dtype=np.float32)
            n = len(rows)
            if tta:
                rows = np.concatenate([rows, rows[..., ::-1]])
            out = dict(zip(wanted, self.classifier.run(wanted, {"image": rows})))
            part = {name: out[name] for name in names}
            if pooled:
                part["pooled"] = out["features"].mean(axis=(2, 3))
            part = calibration.apply(mirror_average(part, n) if tta else part)
            if explain:
                part["cam"] = grad_cam(out["features"][:n], out["cam_weights"][:n], part[self.cam_head].argmax(1))
            parts.append(part)
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def reconstruct(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """(reconstructions N x 3 x 128 x 128 in [-1, 1], PSNR per image) of the pictures as the
        autoencoder takes them (letterboxed to 128 px, antialiased bilinear: inference.image)."""
        x = pixels(images, AE_SIZE, Image.Resampling.BILINEAR)
        step = RUN_ROWS["autoencoder"]
        recon = np.concatenate([self.autoencoder.run(None, {"image": x[i:i + step]})[0] for i in range(0, len(x), step)])
        return recon, psnr(recon, x)

    def add_reconstructions(self, images: list[Image.Image], results: list[Analysis]) -> None:
        recon, values = self.reconstruct(images)
        for result, value, array in zip(results, values.tolist(), denormalize(recon).transpose(0, 2, 3, 1)):
            result.psnr, result.reconstruction = value, Image.fromarray(array)

    def analyze(self, images: list[Image.Image], reconstruct: bool = True, tta: bool | None = None,
                explain: bool = False) -> list[Analysis]:
        """With `explain`, each Analysis also holds extra["cam"]: its Grad-CAM map (h x w, in [0, 1])."""
        if not images:
            return []
        with self.lock:
            probs = self.probabilities(pixels(images, self.input_size), tta, explain)
            results = ranked(probs, self.labels, self.model_id)
            for result, cam in zip(results, probs.get("cam", [])):
                result.extra["cam"] = cam
            if reconstruct and self.autoencoder is not None:
                self.add_reconstructions(images, results)
        return results


def open_image_models(weights=None, device=None, autoencoder: bool = True):
    """The image models for `predict`: OnnxArtModels where the ONNX engine runs (no torch imported),
    else ArtModels."""
    if engine_for(device) == "onnx":
        return OnnxArtModels(weights, autoencoder=autoencoder)
    from artlab.inference.image import ArtModels

    return ArtModels(weights, device, autoencoder=autoencoder)
