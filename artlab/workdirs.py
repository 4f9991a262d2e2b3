"""Where a running app keeps its temporary files: one private folder per process.

    <tmp>/artlab-app-XXXXXXXX/      mode 0700, made by mkdtemp
        .lock                       locked (flock) by its process for as long as it lives
        gradio/                     Gradio's uploads and outputs (the app's GRADIO_TEMP_DIR)
        artlab-outputs-XXXXXXXX/    pictures the app hands to Gradio
        artlab-train-XXXXXXXX/      one Train-tab visitor's images and models

A process killed mid-session cannot clean up after itself, so the first call to `process_dir`
removes the folders of processes that are gone (their lock is free), and the artlab-train-* and
artlab-outputs-* folders that versions before this layout left directly in <tmp>.
No gradio here: the UI points Gradio at `gradio_temp_dir()`.
"""

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; stale folders are then left alone
    fcntl = None

log = logging.getLogger(__name__)

APP_PREFIX = "artlab-app-"
LEGACY_PREFIXES = ("artlab-train-", "artlab-outputs-")
LOCK_NAME = ".lock"
LEGACY_MAX_AGE_S = 3600          # an old-layout folder untouched this long belongs to no live visitor
NEW_FOLDER_GRACE_S = 60          # a folder this young may still be taking its lock

_lock = threading.Lock()
_root: Path | None = None
_lock_file = None                # kept open (and locked) for the life of the process


def process_dir() -> Path:
    """This process's private temporary folder, made (and stale ones swept) on first use."""
    global _root, _lock_file
    with _lock:
        if _root is None:
            remove_stale()
            root = Path(tempfile.mkdtemp(prefix=APP_PREFIX))
            _lock_file = open(root / LOCK_NAME, "w")
            if fcntl is not None:
                fcntl.flock(_lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            _root = root
        return _root


def gradio_temp_dir() -> Path:
    """The folder Gradio stores uploads and outputs in: this process's own, served to no one else."""
    folder = process_dir() / "gradio"
    folder.mkdir(exist_ok=True)
    return folder


def remove_stale(tmp: str | Path | None = None, now: float | None = None) -> list[Path]:
    """Remove the temporary folders of ArtLab processes that are gone; return what was removed."""
    tmp = Path(tmp or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = sorted(tmp.iterdir())
    except OSError:
        return removed
    for folder in candidates:
        try:
            if folder.is_symlink() or not folder.is_dir() or not _mine(folder):
                continue     # never follow a link, nor touch another user's folder
            stale = (_owner_gone(folder, now) if folder.name.startswith(APP_PREFIX) else
                     folder.name.startswith(LEGACY_PREFIXES) and now - folder.stat().st_mtime > LEGACY_MAX_AGE_S)
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("removed %d temporary folder(s) left by ArtLab processes that are gone", len(removed))
    return removed


def _mine(folder: Path) -> bool:
    return not hasattr(os, "getuid") or folder.stat().st_uid == os.getuid()


def _owner_gone(folder: Path, now: float) -> bool:
    """Whether the process that made `folder` has ended: its lock can be taken."""
    if fcntl is None or (_root is not None and folder == _root):
        return False
    try:
        with open(folder / LOCK_NAME, "r+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False        # held: its process is alive
            return True
    except FileNotFoundError:
        return now - folder.stat().st_mtime > NEW_FOLDER_GRACE_S   # no lock yet: only if not brand new
