"""Keeping a long-running process's memory flat (glibc's allocator; a no-op elsewhere).

A server thread pool makes glibc give each new worker thread its own malloc arena, and
each arena keeps the memory it once held: the app's RSS then climbs in steps of tens of MB
for hundreds of requests, with nothing leaking. Two arenas are plenty for one inference at
a time. Memory freed while loading models (fp32 copies cast to bf16, unfused layers) is
handed back with malloc_trim.
"""

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)
M_ARENA_MAX = -8   # mallopt parameter, from glibc's malloc.h


@functools.cache
def _libc():
    """glibc, opened once (a new CDLL per call would leave ctypes objects behind on every request)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (call before the server starts its threads). True if applied."""
    libc = _libc()
    applied = bool(libc and libc.mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, applied)
    return applied


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (after loading models)."""
    libc = _libc()
    if libc:
        libc.malloc_trim(0)
