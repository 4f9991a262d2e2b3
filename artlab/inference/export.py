"""ONNX export of a classifier folder (shipped or fine-tuned).

    python -m artlab export --weights OUT_DIR --onnx model.onnx

The ONNX graph takes a batch of letterboxed RGB images scaled to [-1, 1]
(N x 3 x S x S, S = the card's input_size) and returns one softmax output per head
(named after the head) and the L2-normalised "embedding"; the head order and labels
are written into the model's metadata ("labels", JSON) so the file stands alone.
Uses torch's TorchScript-based exporter, which needs neither onnx nor onnxscript;
onnxruntime is needed only to check parity.
"""

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from artlab.checkpoints import AUTOENCODER_NAME, Checkpoint
from artlab.files import atomic_write
from artlab.inference.image import load_autoencoder, load_classifier

log = logging.getLogger(__name__)
OPSET = 17


class _Probabilities(nn.Module):
    """ArtClassifier -> (softmax per head..., embedding), a fixed tuple for ONNX."""

    def __init__(self, model, heads: list[str]):
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, x):
        out = self.model(x)
        return tuple(out[h].float().softmax(1) for h in self.heads) + (out["embedding"],)


class _WithCam(nn.Module):
    """ArtClassifier -> (softmax per head..., embedding, features, cam_weights): the ONNX engine's graph,
    whose last two outputs give Grad-CAM without a second pass (ArtClassifier.forward_with_cam)."""

    def __init__(self, model, heads: list[str]):
        super().__init__()
        self.model, self.heads = model, heads
        self.cam_head = CAM_HEAD if CAM_HEAD in heads else heads[0]

    def forward(self, x):
        out = self.model.forward_with_cam(x, self.cam_head)
        return (tuple(out[h].float().softmax(1) for h in self.heads)
                + (out["embedding"], out["features"], out["cam_weights"]))


CAM_HEAD = "style"     # the head Grad-CAM explains (a model without one: its first head)


def export_onnx(weights: str | Path, onnx_path: str | Path, cam: bool = False) -> dict:
    """Write `onnx_path` (atomically) and return what it holds: heads, labels, input size.
    `cam`: also the outputs Grad-CAM needs ("features", "cam_weights"; the ONNX engine's form)."""
    model, card = load_classifier(weights, "cpu")
    heads = list(card["labels"])
    size = int(card["input_size"])
    wrapper = (_WithCam if cam else _Probabilities)(model, heads).eval()
    outputs = heads + ["embedding"] + (["features", "cam_weights"] if cam else [])
    onnx_path = Path(onnx_path)

    def write(tmp: Path):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            torch.onnx.export(wrapper, (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False,
                              input_names=["image"], output_names=outputs,
                              dynamic_axes={"image": {0: "batch"}, **{n: {0: "batch"} for n in outputs}},
                              opset_version=OPSET, do_constant_folding=True)
        _add_metadata(str(tmp), {"labels": json.dumps(card["labels"], ensure_ascii=False), "input_size": str(size),
                                 "normalisation": card.get("normalisation", "RGB scaled to [-1, 1]")})

    atomic_write(onnx_path, write)
    log.info("wrote %s (%.1f MB)", onnx_path, onnx_path.stat().st_size / 1e6)
    return {"onnx": str(onnx_path), "heads": heads, "labels": card["labels"], "input_size": size}


def export_autoencoder(weights, onnx_path: str | Path) -> Path:
    """The autoencoder as ONNX (atomically): "image" (N x 3 x 128 x 128 in [-1, 1]) -> "reconstruction"."""
    model, _ = load_autoencoder(weights, "cpu")
    size = 128

    def write(tmp: Path):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False,
                              input_names=["image"], output_names=["reconstruction"],
                              dynamic_axes={"image": {0: "batch"}, "reconstruction": {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True)

    return atomic_write(Path(onnx_path), write)


def export_for_engine(checkpoint: Checkpoint, onnx_path: str | Path) -> Path:
    """The ONNX file the ONNX engine (inference.engine) runs for a classifier or autoencoder checkpoint."""
    if checkpoint.name == AUTOENCODER_NAME:
        return export_autoencoder(checkpoint, onnx_path)
    export_onnx(checkpoint, onnx_path, cam=True)
    return Path(onnx_path)


def _add_metadata(path: str, metadata: dict) -> None:
    try:
        import onnx
    except ImportError:
        log.info("onnx is not installed: the labels are not embedded in the file (they are in the card)")
        return
    proto = onnx.load(path)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def onnx_parity(weights: str | Path, onnx_path: str | Path, images: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch and onnxruntime outputs on `images` ([-1, 1] floats)."""
    import onnxruntime

    model, card = load_classifier(weights, "cpu")
    wrapper = _Probabilities(model, list(card["labels"])).eval()
    with torch.no_grad():
        expected = wrapper(images)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": images.numpy()})
    return max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected))
