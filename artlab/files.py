"""Write-then-rename, written once: a crash or a kill never leaves a half-written file or folder in place.

Every temporary is a hidden sibling of its target named `.NAME.PID.RANDOM.tmp` (`.old` for a
folder being swapped out), so `remove_stale` can tell what a killed writer left behind (its
PID no longer runs) from a write still in progress.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")


def atomic_write(path: str | Path, write: Callable[[Path], object], durable: bool = True) -> Path:
    """Call `write(tmp)` to fill a temporary sibling, then rename it onto `path`.

    `durable` flushes the bytes to disk before the rename (a power cut keeps the old file or the
    new one); thumbnails that a database commit follows anyway skip it for speed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, ".tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), durable)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling folder to fill; when the block ends without an error it
    takes the place of `path`. An existing folder there is swapped out only once the new one is
    complete; on an error (or a kill) the old folder stays and the temporary goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = _sibling(path, ".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale(path: str | Path) -> None:
    """Delete the temporary siblings of `path` whose writer no longer runs (and the pid-less
    `.NAME.tmp` of older versions, which no running writer uses)."""
    path = Path(path)
    for leftover in path.parent.glob(f".{path.name}.*"):
        middle = leftover.name[len(path.name) + 2:].split(".")   # PID, RANDOM, tmp|old
        legacy = leftover.name == f".{path.name}.tmp"
        ours = len(middle) == 3 and middle[0].isdigit() and middle[2] in ("tmp", "old")
        if legacy or (ours and not _process_alive(int(middle[0]))):
            log.info("removing %s, left by a writer that no longer runs", leftover)
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        return True
    return True
