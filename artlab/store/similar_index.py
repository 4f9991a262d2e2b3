"""Similar works in a large gallery: an approximate nearest-neighbour index over the embeddings,
kept beside the database and brought up to date from it.

Below `gallery.EXACT_SEARCH_MAX` works the gallery scans every embedding (exact, a few ms). Past
that, a scan cannot keep to the targets on a 2-core CPU: 1,000,000 x 512 float32 is 2 GB to hold
and to read per query (bf16 through oneDNN: 180 ms; int8 through usearch's exact SIMD scan: 240 ms).
So the gallery asks this index for CANDIDATES works and ranks them exactly by their stored float32
embeddings. The index is faiss's IVF-PQ (inverted lists over a k-means partition, 64-byte product
codes): a well-kept library (Meta's faiss, faiss-cpu on PyPI), 75 MB for a million works, built in
about 20 s, < 1 ms a query, and new works are added without retraining. (usearch's HNSW was tried
first: 18 minutes to build a million 512-d vectors on 2 cores.)

Staying current, also when another process writes the database: works are only ever appended
with growing ids, so new ones are added by id; SQLite triggers (gallery.SEARCH_SCHEMA) log every
deleted or re-analysed work, which the index removes (and re-adds with its new embedding). It is
rebuilt only when it has grown 4x past what it was trained on, or when a tenth of it changed at
once (a refresh after new weights). A build is saved under `similar/` in the gallery folder
(written aside, then renamed) with the state it reflects, so a restarted app loads it instead of
building again.
"""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from artlab.files import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

CANDIDATES = 64            # ranked exactly afterwards; 0.99 of near-duplicates found among them at 1M works
NPROBE = 32                # inverted lists visited per query
PQ_BYTES = 64              # bytes per work in the index (product quantiser: 64 codes of 8 bits)
TRAIN_SAMPLE = 60_000      # works the partition and the codes are learned from
SAVE_AFTER_ADDS = 100_000  # works added since the last save that make it worth saving again
KMEANS_ITERATIONS = 10     # for the partition and the codes (faiss's default 25 takes 2.5x as long to build)

Rows = tuple[np.ndarray, np.ndarray]    # work ids and their float32 embeddings


@dataclass
class Source:
    """What the index reads from the gallery's database (only its model's works)."""

    chunks: Callable[[int], Iterator[Rows]]   # the works with id > after, in id order, in chunks
    changed: Callable[[int], list[int]]       # ids of works deleted or re-analysed after a log position
    rows: Callable[[list[int]], Rows]         # the works with these ids (those that still exist)


def _lists_for(count: int) -> int:
    """Inverted lists: about 4 sqrt(n), with at least 39 training points each (faiss's advice)."""
    return int(max(1, min(4 * np.sqrt(count), min(count, TRAIN_SAMPLE) / 39)))


class SimilarIndex:
    """The IVF-PQ index of one model's works (or of all works) in one gallery folder."""

    def __init__(self, folder: Path, name: str):
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:80]
        self.path = Path(folder) / f"{stem}.faiss"
        self.state_path = Path(folder) / f"{stem}.json"
        self.index = None
        self.logged = -1            # the position in the database's change log this index reflects
        self.last_id = 0            # the highest work id it has seen
        self.built_for = 0          # works in the gallery when it was built (its partition fits that many)
        self.unsaved = 0

    def candidates(self, query: np.ndarray, count: int = CANDIDATES) -> np.ndarray:
        """Ids of about `count` works nearest to `query` by the compressed codes (call `sync` first)."""
        if self.index is None or self.index.ntotal == 0:
            return np.zeros(0, np.int64)
        _, ids = self.index.search(np.ascontiguousarray(query, dtype=np.float32)[None], count)
        return ids[0][ids[0] >= 0]

    def sync(self, logged: int, last_id: int, count: int, source: Source) -> None:
        """Bring the index up to the database's state (its change log at `logged`, works up to `last_id`)."""
        if self.index is None:
            self._load()
        changed = source.changed(self.logged) if self.index is not None and logged != self.logged else []
        if self.index is None or count > 4 * max(1, self.built_for) or len(changed) > self.index.ntotal / 10:
            self._build(logged, count, source)
            return
        if changed:   # deleted or re-analysed: out with the old vectors, in with those still there
            self.index.remove_ids(np.array(sorted(set(changed)), np.int64))
            self._add([source.rows(sorted(set(c for c in changed if c <= self.last_id)))])
        if last_id > self.last_id:
            self._add(source.chunks(self.last_id))
        self.logged = logged
        if self.unsaved >= SAVE_AFTER_ADDS:
            self._save()

    def _build(self, logged: int, count: int, source: Source) -> None:
        import faiss

        log.info("building the similar-works index of %d works (%s)", count, self.path.name)
        sample = self._training_sample(source, count)
        lists = _lists_for(count)
        dim = sample.shape[1]
        self.index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, min(PQ_BYTES, dim), 8,
                                      faiss.METRIC_INNER_PRODUCT)
        self.index.cp.niter = self.index.pq.cp.niter = KMEANS_ITERATIONS
        self.index.train(sample)
        self.index.nprobe = min(NPROBE, lists)
        self.built_for, self.logged, self.last_id = count, logged, 0
        self._add(source.chunks(0))
        self._save()

    @staticmethod
    def _training_sample(source: Source, count: int) -> np.ndarray:
        """An even sample of up to TRAIN_SAMPLE embeddings (every k-th work, one pass over the database)."""
        step = max(1, count // TRAIN_SAMPLE)
        # copies: a view would keep each whole chunk alive (2 GB for a million works)
        sample = np.concatenate([matrix[::step].copy() for _, matrix in source.chunks(0)])[:TRAIN_SAMPLE]
        return np.ascontiguousarray(sample, dtype=np.float32)

    def _add(self, chunks) -> None:
        for ids, matrix in chunks:
            if len(ids):
                self.index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32), ids.astype(np.int64))
                self.last_id = max(self.last_id, int(ids.max()))
                self.unsaved += len(ids)

    def _save(self) -> None:
        import faiss

        atomic_write(self.path, lambda tmp: faiss.write_index(self.index, str(tmp)))
        state = {"logged": self.logged, "last_id": self.last_id, "built_for": self.built_for}
        atomic_write_text(self.state_path, json.dumps(state))
        self.unsaved = 0

    def _load(self) -> None:
        """The saved index and the state it reflects, if both read; else nothing (a build follows)."""
        import faiss

        try:
            state = json.loads(self.state_path.read_text())
            index = faiss.read_index(str(self.path))
            self.logged, self.last_id, self.built_for = (int(state[k]) for k in ("logged", "last_id", "built_for"))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError):
            return
        self.index = index
