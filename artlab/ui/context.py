"""What the app's tabs share: settings, and the models and gallery, each loaded once, lazily.

No gradio here: this is plain state with locks, so it can be tested and reused.
"""

import hmac
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CURATOR_PASSWORD_ENV = "ARTLAB_CURATOR_PASSWORD"


def curator_ok(password: str | None) -> bool:
    """The curator's password (from ARTLAB_CURATOR_PASSWORD), compared in constant time.

    With no password configured, curator actions are refused: a kiosk must never be open by default.
    """
    expected = os.environ.get(CURATOR_PASSWORD_ENV, "")
    if not expected or not password:
        return False
    return hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class AppContext:
    weights: str | None = None            # None: $ARTLAB_WEIGHTS or the shipped weights
    gallery_dir: str | None = None        # None: $ARTLAB_GALLERY or the user's data dir
    kiosk: bool = False
    device: str | None = None
    idle_minutes: float = 3.0             # kiosk: a visitor's uploads are forgotten after this
    max_upload_mb: int = 20
    _models: dict = field(default_factory=dict)
    _text: object = None
    _text_error: str | None = None
    _gallery: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------- image models

    def models(self, weights: str | None = None):
        """The ArtModels for `weights` (default: the app's), loaded on first use and kept."""
        from artlab.inference import ArtModels

        key = str(weights or self.weights or "")
        with self._lock:
            if key not in self._models:
                log.info("loading image models from %s", key or "the default weights")
                self._models[key] = ArtModels(weights or self.weights, self.device)
            return self._models[key]

    def text_models(self):
        """(TextModels or None, message): the text side is optional; its absence is explained."""
        with self._lock:
            if self._text is None and self._text_error is None:
                try:
                    from artlab.text_inference import TextModels
                    from artlab.weights import WeightsError
                except ImportError as e:
                    self._text_error = f"The text models are not part of this installation yet ({e.name})."
                    return None, self._text_error
                try:
                    self._text = TextModels(self.weights, self.device)
                except (WeightsError, OSError, KeyError, ValueError) as e:
                    self._text_error = f"The text models could not be loaded: {e}"
            return self._text, self._text_error

    def gallery(self):
        from artlab.gallery import Gallery

        with self._lock:
            if self._gallery is None:
                self._gallery = Gallery(self.gallery_dir)
            return self._gallery

    def preload(self) -> threading.Thread:
        """Load models in the background so the first visitor does not wait for them."""
        def work():
            try:
                self.gallery()
                self.models()
                self.text_models()
            except Exception as e:  # noqa: BLE001 - reported on first use with the same error
                log.warning("preloading models failed: %s", e)
        thread = threading.Thread(target=work, name="artlab-preload", daemon=True)
        thread.start()
        return thread

    def device_name(self) -> str:
        from artlab.device import pick_device

        device = pick_device(self.device)
        if device.type == "cuda":
            import torch
            return f"GPU ({torch.cuda.get_device_name(device)})"
        return {"mps": "Apple GPU (MPS)", "cpu": f"CPU ({os.cpu_count()} cores)"}.get(device.type, str(device))

    def served_folders(self) -> list[str]:
        """The only folders the web server may serve files from: gallery images and our assets."""
        from artlab.gallery import THUMB_DIR, WORKS_DIR, default_gallery_dir

        base = Path(self.gallery_dir).expanduser() if self.gallery_dir else default_gallery_dir()
        assets = Path(__file__).resolve().parents[2] / "assets"
        return [str(base / THUMB_DIR), str(base / WORKS_DIR), str(assets)]
