"""The gallery store: an embedded SQLite database (WAL) of artworks and what ArtLab sees in them.

A gallery is a folder holding `gallery.sqlite` and `thumbs/` (small JPEG copies the
app may serve; the originals stay where they are and are never served). Uploaded
works added from the app keep a full copy under `works/`, since upload files are
temporary. Every batch of additions is one transaction, so a kill leaves either
the whole batch or none of it; thumbnails are written (atomically) before the
commit, so a committed row always has its thumbnail.
"""

import datetime
import io
import json
import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from artlab import paths
from artlab.files import atomic_write, atomic_write_bytes
from artlab.images import load_image, stored_suffix
from artlab.store.works import NewWork, Work

log = logging.getLogger(__name__)

DB_NAME = "gallery.sqlite"
THUMB_DIR = "thumbs"
WORKS_DIR = "works"
THUMB_SIDE = 320
SCHEMA_VERSION = 2  # 2: works.model
ANY_MODEL = "*"     # similar(model=ANY_MODEL): compare with every work, whichever model embedded it

SCHEMA = """
CREATE TABLE IF NOT EXISTS works (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,                 -- the original file
    sha256 TEXT NOT NULL UNIQUE,        -- content hash: the same picture is stored once
    title TEXT, artist TEXT, year TEXT, -- when known (index --meta, or typed in the app)
    style TEXT NOT NULL,                -- top predicted labels, for filtering
    subject TEXT NOT NULL,
    labels TEXT NOT NULL,               -- JSON: head -> [[label, probability], ...], best first
    psnr REAL,
    embedding BLOB NOT NULL,            -- float32, L2-normalised
    added TEXT NOT NULL,                -- ISO date and time, UTC
    model TEXT                          -- the classifier that made labels and embedding (its
                                        -- weights' hash); NULL: stored before version 2
);
CREATE INDEX IF NOT EXISTS works_style ON works(style);
CREATE INDEX IF NOT EXISTS works_subject ON works(subject);
CREATE INDEX IF NOT EXISTS works_style_subject ON works(style, subject);  -- browse by both, newest first
"""
# After a version-1 gallery has gained the model column.
SEARCH_SCHEMA = """
CREATE INDEX IF NOT EXISTS works_model ON works(model);
-- Works deleted or re-analysed, logged by whichever process writes, for the similar-works index
-- (artlab/store/similar_index.py), which finds additions by id.
CREATE TABLE IF NOT EXISTS changed_works (seq INTEGER PRIMARY KEY AUTOINCREMENT, work INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS works_deleted AFTER DELETE ON works
    BEGIN INSERT INTO changed_works (work) VALUES (old.id); END;
CREATE TRIGGER IF NOT EXISTS works_reanalysed AFTER UPDATE OF embedding, model ON works
    BEGIN INSERT INTO changed_works (work) VALUES (old.id); END;
"""
EXACT_SEARCH_MAX = 50_000   # up to this many works similar() scans them all (100 MB, ~5 ms); past it, an index


class Gallery:
    """One gallery folder. Thread-safe (one connection, one lock); other processes may write too (WAL)."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = paths.gallery_dir(folder)
        self.thumbs = self.folder / THUMB_DIR
        self.works_dir = self.folder / WORKS_DIR
        self.thumbs.mkdir(parents=True, exist_ok=True)
        self.works_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.folder / DB_NAME
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.db_path, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
        with self._conn:
            self._conn.executescript(SCHEMA)
            columns = {row["name"] for row in self._conn.execute("PRAGMA table_info(works)")}
            if "model" not in columns:   # a version-1 gallery: its rows keep model NULL until refreshed
                self._conn.execute("ALTER TABLE works ADD COLUMN model TEXT")
            self._conn.executescript(SEARCH_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._matrix_cache = None  # (data_version, ids, matrix) for similarity search
        self._indexes = {}         # model -> SimilarIndex, for galleries past EXACT_SEARCH_MAX
        self._counts = {}          # (change state, model) -> works of that model
        self._index_lock = threading.Lock()

    def close(self):
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ writing

    def known(self, sha256: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM works WHERE sha256=?", (sha256,)).fetchone() is not None

    def id_for(self, sha256: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT id FROM works WHERE sha256=?", (sha256,)).fetchone()
        return row[0] if row else None

    def add_batch(self, works: list[NewWork], executor=None) -> list[int]:
        """Store works in one transaction; works whose hash is already stored are skipped.

        Returns the ids of the rows added (in order, skipped ones left out). With an
        `executor` (a thread pool) the thumbnails are encoded in parallel (the bulk index).
        """
        if executor is None:
            for work in works:
                self._write_thumb(work.sha256, work.image)
        else:
            list(executor.map(lambda work: self._write_thumb(work.sha256, work.image), works))
        added = []
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self._lock, self._conn:
            for work in works:
                cursor = self._conn.execute(
                    "INSERT OR IGNORE INTO works (path, sha256, title, artist, year, style, subject, labels, psnr,"
                    " embedding, added, model) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (str(work.path), work.sha256, work.title, work.artist, work.year,
                     work.labels["style"][0][0], work.labels["subject"][0][0],
                     json.dumps(work.labels), work.psnr,
                     np.asarray(work.embedding, dtype=np.float32).tobytes(), now, work.model))
                if cursor.rowcount:
                    added.append(cursor.lastrowid)
        self._matrix_cache = None
        return added

    def _write_thumb(self, sha256: str, image: Image.Image):
        path = self.thumb_path(sha256)
        if path.exists():
            return
        thumb = image.convert("RGB")
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BICUBIC)
        # Not flushed to disk one by one (thousands in a bulk index): the commit that follows is.
        atomic_write(path, lambda tmp: thumb.save(tmp, "JPEG", quality=88), durable=False)

    def keep_copy(self, data: bytes, sha256: str) -> Path:
        """Store an upload's bytes under works/ (uploads are temporary files), named by the image
        format they decode as; formats without a suffix of their own are re-encoded as PNG."""
        suffix = stored_suffix(data)
        if suffix is None:
            buffer = io.BytesIO()
            load_image(data).save(buffer, "PNG")
            data, suffix = buffer.getvalue(), ".png"
        path = self.works_dir / f"{sha256}{suffix}"
        if not path.exists():
            atomic_write_bytes(path, data)
        return path

    def delete(self, work_id: int) -> bool:
        with self._lock, self._conn:
            removed = self._conn.execute("DELETE FROM works WHERE id=?", (work_id,)).rowcount
        self._matrix_cache = None
        return bool(removed)

    # ------------------------------------------------------------------ reading

    def thumb_path(self, sha256: str) -> Path:
        return self.thumbs / f"{sha256}.jpg"

    def _work(self, row) -> Work:
        return Work(id=row["id"], path=row["path"], sha256=row["sha256"], title=row["title"],
                    artist=row["artist"], year=row["year"], style=row["style"], subject=row["subject"],
                    labels=json.loads(row["labels"]), psnr=row["psnr"], added=row["added"],
                    thumb=str(self.thumb_path(row["sha256"])), model=row["model"])

    def embedding_of(self, work_id: int) -> np.ndarray | None:
        with self._lock:
            row = self._conn.execute("SELECT embedding FROM works WHERE id=?", (int(work_id),)).fetchone()
        return np.frombuffer(row[0], dtype=np.float32) if row else None

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM works").fetchone()[0]

    def get(self, work_id: int) -> Work | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM works WHERE id=?", (int(work_id),)).fetchone()
        return self._work(row) if row else None

    def browse(self, style: str | None = None, subject: str | None = None, query: str | None = None,
               limit: int = 60, offset: int = 0) -> list[Work]:
        """Works, newest first, filtered by top style/subject and a title (or artist, file name) search."""
        where, params = [], []
        if style:
            where.append("style=?")
            params.append(style)
        if subject:
            where.append("subject=?")
            params.append(subject)
        if query and query.strip():
            like = "%" + query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(title LIKE ? ESCAPE '\\' OR artist LIKE ? ESCAPE '\\' OR path LIKE ? ESCAPE '\\')")
            params += [like, like, like]
        sql = "SELECT * FROM works" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._conn.execute(sql, (*params, int(limit), int(offset))).fetchall()
        return [self._work(r) for r in rows]


    def random(self, n: int = 2) -> list[Work]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM works ORDER BY RANDOM() LIMIT ?", (n,)).fetchall()
        return [self._work(r) for r in rows]

    def all_rows(self) -> list[dict]:
        """Every row as plain values (embedding as bytes): for tests and export."""
        with self._lock:
            return [dict(r) for r in self._conn.execute("SELECT * FROM works ORDER BY id").fetchall()]

    def other_model_count(self, model: str) -> int:
        """How many works were analysed by another classifier than `model` (or before ids were kept):
        their embeddings can't be compared with `model`'s until `refresh` re-analyses them."""
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM works WHERE model IS NOT ?", (model,)).fetchone()[0]

    def other_model_works(self, model: str) -> list[sqlite3.Row]:
        """id, path and sha256 of the works `other_model_count` counts, in id order."""
        with self._lock:
            return self._conn.execute("SELECT id, path, sha256 FROM works WHERE model IS NOT ? ORDER BY id",
                                      (model,)).fetchall()

    def update_analyses(self, updates: list[tuple[int, object]]) -> None:
        """(work id, Analysis) pairs: store each new analysis (labels, embedding, model) in one transaction."""
        with self._lock, self._conn:
            for work_id, analysis in updates:
                self._conn.execute(
                    "UPDATE works SET style=?, subject=?, labels=?, embedding=?, model=? WHERE id=?",
                    (analysis.labels["style"][0][0], analysis.labels["subject"][0][0], json.dumps(analysis.labels),
                     analysis.embedding.numpy().astype(np.float32).tobytes(), analysis.model, int(work_id)))
        self._matrix_cache = None

    def _matrix(self, model: str | None = ANY_MODEL):
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0], self.count(), model
            if self._matrix_cache is None or self._matrix_cache[0] != version:
                if model == ANY_MODEL:
                    rows = self._conn.execute("SELECT id, embedding FROM works ORDER BY id").fetchall()
                else:   # IS, not =: model None finds the works stored before models were recorded
                    rows = self._conn.execute("SELECT id, embedding FROM works WHERE model IS ? ORDER BY id",
                                              (model,)).fetchall()
                ids = np.array([r["id"] for r in rows], dtype=np.int64)
                matrix = (np.stack([np.frombuffer(r["embedding"], dtype=np.float32) for r in rows])
                          if rows else np.zeros((0, 1), np.float32))
                self._matrix_cache = (version, ids, matrix)
            return self._matrix_cache[1], self._matrix_cache[2]

    def similar(self, embedding, k: int = 6, exclude_id: int | None = None,
                exclude_sha: str | None = None, model: str | None = ANY_MODEL) -> list[tuple[Work, float]]:
        """The k works nearest by cosine similarity of the embeddings, best first.

        `model`: the classifier that made `embedding` (ArtModels.model_id); only works it
        embedded too are compared, since two models' embeddings live in different spaces.
        Up to EXACT_SEARCH_MAX works all are compared; past that, the similar-works index
        proposes candidates (artlab/store/similar_index.py) and those are ranked exactly."""
        query = np.asarray(embedding, dtype=np.float32).ravel()
        if self._works_of(model) <= EXACT_SEARCH_MAX:
            ids, matrix = self._matrix(model)
        else:
            ids, matrix = self._candidates(query, model, k)
        if not len(ids):
            return []
        if query.shape[0] != matrix.shape[1]:
            log.warning("embedding size %d differs from the gallery's %d", query.shape[0], matrix.shape[1])
            return []
        norms = np.linalg.norm(matrix, axis=1) * max(np.linalg.norm(query), 1e-8)
        scores = matrix @ query / np.maximum(norms, 1e-8)
        order = np.argsort(-scores)
        out = []
        for i in order:
            if len(out) == k:
                break
            work = self.get(int(ids[i]))
            if work is None or work.id == exclude_id or (exclude_sha and work.sha256 == exclude_sha):
                continue
            out.append((work, float(scores[i])))
        return out

    def _change_state(self) -> tuple[int, int]:
        """(position of the change log, highest work id): both O(1), whichever process wrote."""
        with self._lock:
            logged = self._conn.execute("SELECT MAX(seq) FROM changed_works").fetchone()[0] or 0
            last_id = self._conn.execute("SELECT MAX(id) FROM works").fetchone()[0] or 0
        return logged, last_id

    def _works_of(self, model) -> int:
        """How many works `model` embedded (all works for ANY_MODEL), counted again only after a change."""
        key = (self._change_state(), model)
        if key not in self._counts:
            with self._lock:
                sql, params = self._model_filter(model)
                self._counts = {key: self._conn.execute(f"SELECT COUNT(*) FROM works{sql}", params).fetchone()[0]}
        return self._counts[key]

    @staticmethod
    def _model_filter(model, after_id: int | None = None) -> tuple[str, tuple]:
        clauses, params = [], []
        if model != ANY_MODEL:   # IS, not =: model None finds the works stored before models were recorded
            clauses.append("model IS ?")
            params.append(model)
        if after_id is not None:
            clauses.append("id > ?")
            params.append(after_id)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    def _candidates(self, query: np.ndarray, model, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and stored embeddings of the works the similar-works index puts nearest `query`."""
        from artlab.store.similar_index import CANDIDATES, SimilarIndex, Source

        with self._index_lock:
            index = self._indexes.setdefault(model, SimilarIndex(self.folder / "similar", f"model-{model}"))
            (logged, last_id), count = self._change_state(), self._works_of(model)
            source = Source(chunks=lambda after: self._embedding_chunks(model, after),
                            changed=self._changed_after, rows=lambda ids: self._embeddings(ids, model))
            index.sync(logged, last_id, count, source)
            ids = index.candidates(query, max(CANDIDATES, 4 * k))
        return self._embeddings(ids)

    def _changed_after(self, seq: int) -> list[int]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT work FROM changed_works WHERE seq > ?", (seq,))]

    def _embedding_chunks(self, model, after_id: int, size: int = 50_000):
        """(ids, float32 matrix) of `model`'s works with id > after_id, in id order, `size` at a time."""
        while True:
            sql, params = self._model_filter(model, after_id)
            with self._lock:
                rows = self._conn.execute(f"SELECT id, embedding FROM works{sql} ORDER BY id LIMIT ?",
                                          (*params, size)).fetchall()
            if not rows:
                return
            yield (np.array([r[0] for r in rows], np.int64),
                   np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))
            after_id = rows[-1][0]

    def _embeddings(self, ids, model=ANY_MODEL) -> tuple[np.ndarray, np.ndarray]:
        """Ids and float32 embeddings of those of `ids` that exist (and that `model` embedded)."""
        ids = [int(i) for i in ids]
        sql, params = self._model_filter(model)
        sql = (sql + " AND" if sql else " WHERE") + f" id IN ({','.join('?' * len(ids))})"
        with self._lock:
            rows = self._conn.execute(f"SELECT id, embedding FROM works{sql}", (*params, *ids)).fetchall() if ids else []
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
        return (np.array([r[0] for r in rows], np.int64),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def match_labels(self, probs: dict[str, dict[str, float]], k: int = 6) -> list[tuple[Work, float]]:
        """Works whose predicted label distributions agree best with `probs` (head -> label -> p).

        The score is the probability that the work and the query draw the same label,
        summed over heads: how a text's labels find pictures.
        """
        with self._lock:
            rows = self._conn.execute("SELECT id, labels FROM works").fetchall()
        scored = []
        for row in rows:
            labels = json.loads(row["labels"])
            score = sum(p * probs.get(head, {}).get(name, 0.0)
                        for head, ranked in labels.items() for name, p in ranked)
            scored.append((score, row["id"]))
        scored.sort(reverse=True)
        return [(self.get(work_id), score) for score, work_id in scored[:k]]

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
