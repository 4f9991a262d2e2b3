"""Inference, written once: the CLI, the app, the gallery index and the benchmarks all call this.

`ArtModels` loads the shipped (or given) checkpoints once; `analyze` runs one
backbone pass per image batch that serves both heads and the embedding, plus the
autoencoder for the reconstruction and its PSNR. Where the ONNX engine runs (the CPU:
inference.engine), the analysis is its, and torch adds only Grad-CAM's pass when asked.
"""

import logging
import threading

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from artlab.checkpoints import (
    AUTOENCODER_NAME,
    CLASSIFIER_NAME,
    Checkpoint,
    WeightsError,
)
from artlab.data.transforms import resize_for_eval
from artlab.device import inference_dtype, pick_device
from artlab.images import denormalize, letterbox, load_image, normalize, to_uint8_tensor
from artlab.inference.calibration import calibration_for
from artlab.inference.engine import Analysis, OnnxArtModels, engine_for, ranked
from artlab.inference.explain import cam_for, classify_with_cam, overlay
from artlab.memory import release_freed_memory
from artlab.models.autoencoder import IMAGE_SIZE as AE_SIZE
from artlab.models.autoencoder import ArtAutoencoder, interpolate, psnr
from artlab.models.backbone import DEFAULT_VARIANT, VARIANTS, fuse_batchnorm
from artlab.models.classifier import ArtClassifier

log = logging.getLogger(__name__)


@torch.inference_mode()
def classifier_probs(model: ArtClassifier, images_uint8: torch.Tensor, size: int, device,
                     tta: bool = True, batch_size: int = 128, pooled: bool = False) -> dict[str, torch.Tensor]:
    """Softmax per head (and embeddings; with `pooled`, the pooled feature map) for uint8 images,
    uncalibrated; with tta, averaged with the mirror image."""
    model.eval()
    outs: dict[str, list] = {}
    for i in range(0, len(images_uint8), batch_size):
        x = resize_for_eval(images_uint8[i:i + batch_size].to(device), size)
        x = x.contiguous(memory_format=torch.channels_last)
        result = _probs(model, x, tta, pooled)
        for k, v in result.items():
            outs.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}


def _probs(model, x, tta, pooled: bool = False):
    """Softmax per head and the embedding (and with `pooled`, the mean-pooled last feature map, which
    the unsure rule reads); with tta the mirror image rides in the same batch and the two are averaged."""
    n = len(x)
    fmap, neck = model.features(torch.cat([x, x.flip(3)]) if tta else x)
    probs = {k: v.float().softmax(1) for k, v in model.classify(neck).items()}
    if pooled:
        probs["pooled"] = fmap.float().mean(dim=(2, 3))
    embedding = F.normalize(neck.float(), dim=1)
    if tta:
        probs = {k: (v[:n] + v[n:]) / 2 for k, v in probs.items()}
        embedding = F.normalize(embedding[:n] + embedding[n:], dim=1)
    probs["embedding"] = embedding
    return probs


# What a classifier card may ask for: checked before any tensor is allocated, since a card may come
# from an upload (`models import`) and its numbers size the model (embed_dim 1e9 would be terabytes).
MAX_EMBED_DIM = 4096
MAX_HEADS, MAX_CLASSES_PER_HEAD = 8, 1000
INPUT_SIZES = (32, 1024)
MAX_AE_WIDTH = 256


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole_number(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _card_config(card: dict, where) -> dict:
    config = card.get("config", {})
    if not isinstance(config, dict):
        raise WeightsError(f"{where}: 'config' must be a JSON object, not {type(config).__name__} {_shown(config)}")
    return config


def classifier_spec(card: dict, where) -> tuple[dict[str, int], int, bool, str]:
    """(classes per head, embedding size, texture branch, backbone variant) from a classifier card, each
    checked by type and range; WeightsError (one line, naming the field) for anything else."""
    config = _card_config(card, where)
    embed_dim, texture = config.get("embed_dim", 512), config.get("texture", True)
    backbone = config.get("backbone", DEFAULT_VARIANT)   # cards from before Lite1/Lite2: Lite0
    if not isinstance(backbone, str) or backbone not in VARIANTS:
        raise WeightsError(f"{where}: 'backbone' must be one of {', '.join(sorted(VARIANTS))}, not {_shown(backbone)}")
    if not _whole_number(embed_dim, 1, MAX_EMBED_DIM):
        raise WeightsError(f"{where}: 'embed_dim' must be a whole number from 1 to {MAX_EMBED_DIM}, "
                           f"not {_shown(embed_dim)}")
    if not isinstance(texture, bool):
        raise WeightsError(f"{where}: 'texture' must be true or false, not {_shown(texture)}")
    labels = card.get("labels")
    if not isinstance(labels, dict) or not 1 <= len(labels) <= MAX_HEADS:
        raise WeightsError(f"{where}: 'labels' must map 1 to {MAX_HEADS} head names to their class names, "
                           f"not {_shown(labels)}")
    for head, names in labels.items():
        if (not isinstance(names, list) or not 1 <= len(names) <= MAX_CLASSES_PER_HEAD
                or not all(isinstance(name, str) for name in names)):
            raise WeightsError(f"{where}: the labels of head {_shown(head)} must be a list of 1 to "
                               f"{MAX_CLASSES_PER_HEAD} class names")
    if not _whole_number(card.get("input_size"), *INPUT_SIZES):
        raise WeightsError(f"{where}: 'input_size' must be a whole number of pixels from {INPUT_SIZES[0]} "
                           f"to {INPUT_SIZES[1]}, not {_shown(card.get('input_size'))}")
    return {head: len(names) for head, names in labels.items()}, embed_dim, texture, backbone


def load_classifier(weights=None, device=None) -> tuple[ArtClassifier, dict]:
    """`weights`: a Checkpoint, or a folder (None: the default weights) to find one in."""
    checkpoint = Checkpoint.find(weights, CLASSIFIER_NAME)
    path, card = checkpoint.path, checkpoint.card
    heads, embed_dim, texture, backbone = classifier_spec(card, path.with_suffix(".json"))
    model = ArtClassifier(heads, embed_dim=embed_dim, texture=texture, dropout=0.0, drop_path=0.0, backbone=backbone)
    checkpoint.load_into(model)
    return model.float().eval().to(pick_device(device)), card


def load_classifier_for_inference(weights=None, device=None) -> tuple[ArtClassifier, dict]:
    """The classifier exactly as predictions use it: BatchNorm folded, trunk in the inference dtype.

    `evaluate` uses this too, so the accuracy it reports is the accuracy users get.
    """
    model, card = load_classifier(weights, device)
    fuse_batchnorm(model.backbone)  # inference only: never trained after this
    model.set_trunk_dtype(inference_dtype(next(model.parameters()).device))
    return model, card


def load_autoencoder(weights=None, device=None) -> tuple[ArtAutoencoder, dict]:
    checkpoint = Checkpoint.find(weights, AUTOENCODER_NAME)
    path, card = checkpoint.path, checkpoint.card
    width = _card_config(card, path.with_suffix(".json")).get("width", 32)
    if not _whole_number(width, 1, MAX_AE_WIDTH):
        raise WeightsError(f"{path.with_suffix('.json')}: 'width' must be a whole number from 1 to "
                           f"{MAX_AE_WIDTH}, not {_shown(width)}")
    model = ArtAutoencoder(width)
    checkpoint.load_into(model)
    return model.float().eval().to(pick_device(device)), card


def autoencoder_input(image: Image.Image) -> Image.Image:
    """The picture as the autoencoder takes it: letterboxed to 128 px with antialiased bilinear
    resampling, the way its training crops were resized. (Bicubic's sharper edges cost 1.1 dB of
    PSNR on val: 26.5 instead of 27.6 dB, for the same model.)"""
    return letterbox(image, AE_SIZE, Image.Resampling.BILINEAR)


__all__ = ["Analysis", "ArtModels"]   # Analysis lives in inference.engine (no torch there)


class ArtModels:
    """The image models, loaded once. Thread-safe: one analysis at a time per instance."""

    def __init__(self, weights=None, device=None, autoencoder: bool = True, tta: bool = True):
        self.device = pick_device(device)
        self.checkpoint = Checkpoint.find(weights, CLASSIFIER_NAME)   # resolved once, passed down
        # Which engine answers (inference.engine): ONNX Runtime on the CPU, in fp32; torch elsewhere.
        # With ONNX, torch's copy of the classifier is loaded only when something asks for it.
        self.engine = engine_for(self.device)
        self._classifier, self.onnx = None, None
        if self.engine == "onnx":
            self.onnx = OnnxArtModels(self.checkpoint, autoencoder=autoencoder, tta=tta)  # checks files and card
            self.card = self.checkpoint.card
        else:
            self._classifier, self.card = load_classifier_for_inference(self.checkpoint, self.device)
        self.dtype = inference_dtype(self.device)
        self.precision = "fp32" if self.onnx else str(self.dtype).removeprefix("torch.")
        self.labels = {head: tuple(names) for head, names in self.card["labels"].items()}
        self.calibration = calibration_for(self.checkpoint)
        # Who made an embedding: the gallery compares only embeddings of the same classifier.
        self.model_id = self.checkpoint.digest
        self.input_size = int(self.card["input_size"])
        self.autoencoder, self.ae_card = None, None
        if autoencoder:
            try:
                self.autoencoder, self.ae_card = load_autoencoder(self.checkpoint, self.device)
            except WeightsError as e:
                # A curator's fine-tuned model folder holds no autoencoder: use the shipped one.
                if weights is None:
                    raise
                log.info("no autoencoder beside %s (%s); using the shipped one", weights, e)
                try:
                    self.autoencoder, self.ae_card = load_autoencoder(None, self.device)
                except WeightsError as shipped_error:  # labels still work; only the psnr is missing
                    log.warning("no autoencoder: %s; analysing without reconstruction", shipped_error)
        if self.autoencoder is not None:
            # channels_last: ~15% faster on the CPU, same output; bf16 (where native): 40% faster, same PSNR
            self.autoencoder.to(self.dtype).to(memory_format=torch.channels_last)
        self.tta = tta
        self.lock = threading.Lock()
        release_freed_memory()   # the fp32 and unfused copies made while loading

    @property
    def classifier(self) -> ArtClassifier:
        """torch's copy of the classifier: the torch engine's; with the ONNX engine, loaded when first
        asked for (nothing ArtLab runs on a CPU asks)."""
        if self._classifier is None:
            self._classifier, _ = load_classifier_for_inference(self.checkpoint, self.device)
        return self._classifier

    def prepare(self, source, display_side: int = 0) -> Image.Image:
        """Load (path, bytes, PIL) through the one safe loader; raises ImageError.

        Large JPEGs are decoded only as large as the models need (a 1-MP photo at 1/4 scale
        decodes 3x faster), or as `display_side` when the caller also shows the picture
        (the app's heat map, the gallery's thumbnails).
        """
        return load_image(source, max_side=self.decode_side(display_side))

    def decode_side(self, display_side: int = 0) -> int:
        """The long side `prepare` decodes pictures at, at most: larger ones it decodes reduced."""
        return max(self.input_size, AE_SIZE, display_side)

    @torch.inference_mode()
    def analyze(self, images: list[Image.Image], reconstruct: bool = True, explain: bool = False) -> list[Analysis]:
        """With `explain`, also a Grad-CAM heat map of the top style, from the same backbone pass."""
        if not images:
            return []
        if self.onnx is not None:
            return self._analyze_onnx(images, reconstruct, explain)
        with self.lock:
            batch = torch.stack([to_uint8_tensor(letterbox(im, self.input_size)) for im in images])
            x = normalize(batch.to(self.device)).contiguous(memory_format=torch.channels_last)
            if explain:
                probs, cams = self._probs_and_cams(x)
            else:
                probs, cams = _probs(self.classifier, x, self.tta, self._pooled), None
            results = self._ranked(probs)
            if cams is not None:
                for result, image, cam in zip(results, images, cams):
                    result.heatmap = overlay(image, cam)
            if reconstruct and self.autoencoder is not None:
                self._reconstruct(images, results)
        return results

    @torch.inference_mode()
    def label_tensors(self, x: torch.Tensor) -> list[Analysis]:
        """Labels and embeddings for a batch already letterboxed to `input_size` and scaled to
        [-1, 1], on `self.device` (the bulk index decodes and resizes on the GPU itself)."""
        with self.lock:
            if self.onnx is not None and x.device.type == "cpu":
                return _as_tensors(ranked(self.onnx.probabilities(x.float().numpy(), self.tta), self.labels,
                                          self.model_id))
            x = x.contiguous(memory_format=torch.channels_last)
            return self._ranked(_probs(self.classifier, x, self.tta, self._pooled))

    def _analyze_onnx(self, images, reconstruct: bool, explain: bool) -> list[Analysis]:
        """The ONNX engine's analysis; with `explain`, Grad-CAM of the top style from the same run
        (the graph also gives the feature map and the logits' gradients): the same answer either way."""
        with self.lock:
            results = _as_tensors(self.onnx.analyze(images, reconstruct=False, tta=self.tta, explain=explain))
            for result, image in zip(results, images):
                if "cam" in result.extra:
                    result.heatmap = overlay(image, torch.from_numpy(result.extra.pop("cam")))
            if reconstruct and self.autoencoder is not None:
                self._reconstruct(images, results)
        return results

    def share_autoencoder(self, other: "ArtModels") -> None:
        """Use `other`'s autoencoder (a fine-tuned folder has none of its own): one copy in memory."""
        self.autoencoder, self.ae_card = other.autoencoder, other.ae_card
        if self.onnx is not None and other.onnx is not None:
            self.onnx.autoencoder = other.onnx.autoencoder

    @property
    def _pooled(self) -> bool:
        return "pooled" in self.calibration.needs

    def _ranked(self, probs: dict[str, torch.Tensor]) -> list[Analysis]:
        """One Analysis per row, calibrated and ranked as the ONNX engine does (engine.ranked), with
        torch embeddings. Everything comes back from the device in one transfer: a copy per head
        cost a GPU's bulk index more than its model did."""
        names = [*self.labels, "embedding"] + (["pooled"] if "pooled" in probs else [])
        packed = torch.cat([probs[name].float() for name in names], dim=1).cpu().numpy()
        widths = [probs[name].shape[1] for name in names]
        arrays = dict(zip(names, np.split(packed, np.cumsum(widths)[:-1], axis=1)))
        return _as_tensors(ranked(self.calibration.apply(arrays), self.labels, self.model_id))

    def _probs_and_cams(self, x):
        """`_probs` with the first pass run under autograd, so Grad-CAM reuses it."""
        logits, neck, fmap = classify_with_cam(self.classifier, x)
        probs = {k: v.detach().float().softmax(1) for k, v in logits.items()}
        if self._pooled:
            probs["pooled"] = fmap.detach().float().mean(dim=(2, 3))
        embedding = F.normalize(neck.detach().float(), dim=1)
        if self.tta:
            flipped = _probs(self.classifier, x.flip(3), tta=False, pooled=self._pooled)
            probs = {k: (v + flipped[k]) / 2 for k, v in probs.items()}
            embedding = F.normalize(embedding + flipped["embedding"], dim=1)
        probs["embedding"] = embedding
        # Explain the style the user is shown: the top of the (mirror-averaged) probabilities
        # (a model fine-tuned deeper than its head has no style: then its first head's top class).
        head = "style" if "style" in logits else next(iter(logits))
        cams = cam_for(logits[head], fmap, probs[head].argmax(1))
        return probs, cams

    def morph(self, a: Image.Image, b: Image.Image, steps: int) -> list[Image.Image]:
        """`steps` images decoded along the autoencoder's latent line from a to b (the Create tab)."""
        if self.autoencoder is None:
            raise WeightsError("no autoencoder loaded")
        with self.lock, torch.inference_mode():
            pair = torch.stack([to_uint8_tensor(autoencoder_input(im)) for im in (a, b)])
            x = normalize(pair.to(self.device))
            frames = interpolate(self.autoencoder, x[0], x[1], max(2, steps))
            pixels = denormalize(frames).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(array) for array in pixels]

    def _reconstruct(self, images, results):
        if self.onnx is not None and self.onnx.autoencoder is not None:
            return self.onnx.add_reconstructions(images, results)
        small = torch.stack([to_uint8_tensor(autoencoder_input(im)) for im in images])
        x = normalize(small.to(self.device)).contiguous(memory_format=torch.channels_last)
        recon = self.autoencoder(x)
        values = psnr(recon, x).tolist()
        pixels = denormalize(recon).permute(0, 2, 3, 1).cpu().numpy()
        for result, value, array in zip(results, values, pixels):
            result.psnr = value
            result.reconstruction = Image.fromarray(array)


def _as_tensors(results: list[Analysis]) -> list[Analysis]:
    """ArtModels' analyses carry torch embeddings, whichever engine made them."""
    for result in results:
        result.embedding = torch.from_numpy(result.embedding)
    return results
