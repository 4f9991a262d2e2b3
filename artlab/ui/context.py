"""What the app's tabs share: settings, and the models and gallery, each loaded once, lazily.

No gradio here: this is plain state with locks, so it can be tested and reused.
"""

import hmac
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CURATOR_PASSWORD_ENV = "ARTLAB_CURATOR_PASSWORD"
MAX_OTHER_MODELS = 4          # visitors' and curators' models kept loaded beside the app's own


def curator_ok(password: str | None) -> bool:
    """The curator's password (from ARTLAB_CURATOR_PASSWORD), compared in constant time.

    With no password configured, curator actions are refused: a kiosk must never be open by default.
    """
    expected = os.environ.get(CURATOR_PASSWORD_ENV, "")
    if not expected or not password:
        return False
    return hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))


class CuratorGate:
    """The curator password, throttled per client (an IP address): each wrong password in a row
    doubles the wait before the answer and before the next try (BASE_DELAY_S, 2x, 4x, ...); after
    MAX_FAILURES wrong ones in a row the client is locked out for LOCKOUT_S. A right password clears
    the count. Every wrong try is logged. Answers are delayed rather than only refused, so a client
    trying one password after another simply waits; tries sent in parallel are refused unread.
    """

    MAX_FAILURES = 5
    BASE_DELAY_S = 0.25
    LOCKOUT_S = 15 * 60

    def __init__(self, clock=time.monotonic, sleep=time.sleep):
        self._clock, self._sleep = clock, sleep
        self._failures: dict[str, int] = {}        # client -> wrong passwords in a row
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds before `client` may try again (0: now)."""
        with self._lock:
            return max(0.0, self._blocked_until.get(client, 0.0) - self._clock())

    def check(self, password: str | None, client: str) -> str | None:
        """None when `password` is the curator's; else why not, as one line for the visitor."""
        wait = self.wait_s(client)
        if wait > 0:
            log.warning("curator password: try from %s refused unread (%.0f s left to wait)", client, wait)
            return f"too many wrong passwords from your address: try again in {math.ceil(wait)} s"
        if curator_ok(password):
            with self._lock:
                self._failures.pop(client, None)
            return None
        if not password or not os.environ.get(CURATOR_PASSWORD_ENV):
            return "wrong or missing password"        # no guess was made: nothing to count
        backoff = self._failed(client)
        if backoff:
            self._sleep(backoff)
        return "wrong or missing password"

    def _failed(self, client: str) -> float:
        """Count a wrong password; return the back-off to wait before answering."""
        with self._lock:
            count = self._failures[client] = self._failures.get(client, 0) + 1
            delay = self.LOCKOUT_S if count >= self.MAX_FAILURES else self.BASE_DELAY_S * 2 ** (count - 1)
            self._blocked_until[client] = self._clock() + delay
        if count >= self.MAX_FAILURES:
            log.warning("curator password: %d wrong in a row from %s; locked out for %d s",
                        count, client, self.LOCKOUT_S)
            return 0.0                                  # the lockout is told at once, not slept through
        log.warning("curator password: wrong password from %s (%d in a row)", client, count)
        return delay


@dataclass
class AppContext:
    weights: str | None = None            # None: $ARTLAB_WEIGHTS or the shipped weights
    models_dir: str | None = None         # fine-tuned models (artlab.store.registry); None: $ARTLAB_MODELS or default
    gallery_dir: str | None = None        # None: $ARTLAB_GALLERY or the user's data dir
    kiosk: bool = False
    device: str | None = None
    idle_minutes: float = 3.0             # kiosk: a visitor's uploads are forgotten after this
    max_upload_mb: int = 20
    _models: dict = field(default_factory=dict)
    _same_embedding: dict = field(default_factory=dict)
    _text: object = None
    _text_error: str | None = None
    _gallery: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------- image models

    def models(self, weights: str | None = None):
        """The ArtModels for `weights` (default: the app's), loaded on first use and kept.

        A fine-tuned folder without an autoencoder shares the app's one (not whatever
        $ARTLAB_WEIGHTS names). Besides the app's models, the latest MAX_OTHER_MODELS are kept.
        """
        from artlab.checkpoints import AUTOENCODER_NAME, resolve
        from artlab.inference.image import ArtModels

        key = str(weights or self.weights or "")
        own = str(self.weights or "")
        shared = None
        if key != own and not resolve(weights, AUTOENCODER_NAME).exists():
            shared = self.models()
        with self._lock:
            if key not in self._models:
                log.info("loading image models from %s", key or "the default weights")
                models = ArtModels(weights or self.weights, self.device, autoencoder=shared is None)
                if shared is not None:
                    models.autoencoder, models.ae_card = shared.autoencoder, shared.ae_card
                others = [k for k in self._models if k != own]
                for old in others[:max(0, len(others) - MAX_OTHER_MODELS + 1)]:  # dicts keep insertion order
                    del self._models[old]
                self._models[key] = models
            return self._models[key]

    def artwork_weights(self, visitor_weights: str | None = None) -> str | None:
        """The model the Artwork tab uses: the visitor's own (Train tab, "for me"), else the models
        directory's active one (`python -m artlab models activate`, or a curator's "for everyone"),
        else the app's. Read on every request, so an activation needs no restart."""
        if visitor_weights:
            return str(visitor_weights)
        from artlab.store.registry import Registry

        active = Registry(self.models_dir).active_path()
        return str(active) if active else self.weights

    def model_key(self, weights) -> str | None:
        """"name/vN" when `weights` is a model of the models directory, else None."""
        from artlab.store.registry import Registry

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
        import torch

        key = str(weights or self.weights or "")
        if key == str(self.weights or ""):
            return True
        if key not in self._same_embedding:
            from artlab.checkpoints import CLASSIFIER_NAME, read_tensors, resolve

            head_only = self.models(weights).card.get("training", {}).get("depth") == "head"
            # The stored tensors, not the loaded ones: loading folds BatchNorm and rounds to bf16.
            theirs = read_tensors(resolve(weights, CLASSIFIER_NAME))
            ours = read_tensors(resolve(self.weights, CLASSIFIER_NAME))
            shared = [(t, ours.get(name)) for name, t in theirs.items() if not name.startswith("heads.")]
            self._same_embedding[key] = head_only and bool(shared) and all(
                b is not None and a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=2e-3, atol=1e-4)
                for a, b in shared)
        return self._same_embedding[key]

    def text_models(self):
        """(TextModels or None, message): the text side is optional; its absence is explained."""
        with self._lock:
            if self._text is None and self._text_error is None:
                try:
                    from artlab.checkpoints import WeightsError
                    from artlab.inference.text import TextModels
                except ImportError as e:
                    self._text_error = f"The text models are not part of this installation yet ({e.name})."
                    return None, self._text_error
                try:
                    self._text = TextModels(self.weights, self.device)
                except (WeightsError, OSError, KeyError, ValueError) as e:
                    self._text_error = f"The text models could not be loaded: {e}"
            return self._text, self._text_error

    def gallery(self):
        from artlab.store.gallery import Gallery

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
        """The only folders the web server may serve files from: the gallery's thumbnails and our assets.

        Gradio serves these folders' files inline with the type their suffix names, so only folders
        whose every file the app wrote itself are listed: thumbnails are always <sha256>.jpg. The
        full copies under works/ are not served (the work's picture is loaded and sent as an image).
        """
        from artlab.paths import gallery_dir
        from artlab.store.gallery import THUMB_DIR

        base = gallery_dir(self.gallery_dir)
        assets = Path(__file__).resolve().parents[2] / "assets"
        return [str(base / THUMB_DIR), str(assets)]
