"""The models directory: versioned fine-tuned models, one of them active.

    <models>/<name>/v<N>/art_classifier.safetensors + art_classifier.json
    <models>/active.json   {"active": "name/vN" or null, "history": [earlier actives, latest last]}

The directory is `--models PATH`, else $ARTLAB_MODELS, else <user data>/models (paths.models_dir:
the platform's data folder, ~/.local/share/artlab on Linux). "Active" is the
model the app's Artwork tab uses for everyone; rolling back re-activates the one before.
"""

import json
import re
import shutil
from pathlib import Path

from artlab import paths
from artlab.checkpoints import CLASSIFIER_NAME, WeightsError, read_card
from artlab.files import atomic_write_text

ACTIVE_FILE = "active.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_name(name: str) -> str:
    """A model name usable as a folder name: letters, digits, _ . - (others become _)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._-")[:64]
    if not cleaned or not NAME_PATTERN.match(cleaned):
        raise WeightsError(f"{name!r}: not a usable model name (use letters, digits, _ . -)")
    return cleaned


class Registry:
    def __init__(self, path: str | Path | None = None):
        self.root = paths.models_dir(path)

    # ------------------------------------------------------------ versions
    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        found = [int(p.name[1:]) for p in folder.glob("v*") if p.is_dir() and p.name[1:].isdigit()] \
            if folder.is_dir() else []
        return sorted(found)

    def next_path(self, name: str) -> Path:
        """Where the next version of `name` goes (the caller writes it there atomically)."""
        name = safe_name(name)
        return self.root / name / f"v{(self.versions(name) or [0])[-1] + 1}"

    def entries(self) -> list[dict]:
        """Every stored model with its key ("name/vN"), path, classes and held-out accuracy."""
        active = self.active()
        out = []
        if not self.root.is_dir():
            return out
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for version in self.versions(folder.name):
                path = folder / f"v{version}"
                key = f"{folder.name}/v{version}"
                try:
                    card = read_card(path / CLASSIFIER_NAME)
                except WeightsError as e:
                    out.append({"key": key, "path": str(path), "error": str(e), "active": key == active})
                    continue
                val = card.get("metrics", {}).get("val", {})
                out.append({"key": key, "path": str(path), "active": key == active, "date": card.get("date"),
                            "classes": card.get("classes") or card.get("labels", {}).get("labels", []),
                            "images": card.get("data", {}).get("images"), "val_accuracy": val.get("accuracy"),
                            "per_class": val.get("per_class", {})})
        return out

    def resolve(self, key: str) -> str:
        """"name" (its latest version) or "name/vN" -> "name/vN"; WeightsError if absent."""
        name, _, version = key.strip("/").partition("/")
        versions = self.versions(name) if NAME_PATTERN.match(name or "-") else []
        if not versions:
            raise WeightsError(f"no model called {name!r} in {self.root}")
        if not version:
            return f"{name}/v{versions[-1]}"
        if not (version.startswith("v") and version[1:].isdigit() and int(version[1:]) in versions):
            raise WeightsError(f"{name} has no version {version!r} (has: {', '.join(f'v{v}' for v in versions)})")
        return f"{name}/{version}"

    def path(self, key: str) -> Path:
        return self.root / self.resolve(key)

    # ------------------------------------------------------------ active model
    def _state(self) -> dict:
        try:
            state = json.loads((self.root / ACTIVE_FILE).read_text())
            return {"active": state.get("active"), "history": list(state.get("history", []))}
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return {"active": None, "history": []}

    def _save_state(self, state: dict) -> None:
        atomic_write_text(self.root / ACTIVE_FILE, json.dumps(state, indent=2) + "\n")

    def active(self) -> str | None:
        return self._state()["active"]

    def active_path(self) -> Path | None:
        """The active model's folder (None: the shipped model), for the app."""
        key = self.active()
        return self.root / key if key and (self.root / key / f"{CLASSIFIER_NAME}.safetensors").is_file() else None

    def activate(self, key: str) -> str:
        key = self.resolve(key)
        state = self._state()
        if state["active"] != key:
            if state["active"]:
                state["history"].append(state["active"])
            state["active"] = key
            self._save_state(state)
        return key

    def deactivate(self) -> None:
        """Back to the shipped model (the current one can be rolled back to)."""
        state = self._state()
        if state["active"]:
            state["history"].append(state["active"])
            state["active"] = None
            self._save_state(state)

    def rollback(self) -> str | None:
        """Re-activate the previously active model that still exists; None means the shipped model."""
        state = self._state()
        while state["history"]:
            previous = state["history"].pop()
            if (self.root / previous).is_dir():
                state["active"] = previous
                self._save_state(state)
                return previous
        state["active"] = None
        self._save_state(state)
        return None

    def delete(self, key: str) -> str:
        key = self.resolve(key)
        state = self._state()
        if state["active"] == key:
            state["active"] = None
        state["history"] = [k for k in state["history"] if k != key]
        self._save_state(state)
        shutil.rmtree(self.root / key)
        name = key.split("/")[0]
        if not self.versions(name):
            shutil.rmtree(self.root / name, ignore_errors=True)
        return key
