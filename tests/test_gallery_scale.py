"""The gallery-of-a-museum benchmark's small form: 10,000 synthetic works through the real gallery
code (benchmarks/gallery_scale.py fills them), checked for right answers, not for speed: similar
works by the exact scan and by the similar-works index (faiss IVF-PQ, used past EXACT_SEARCH_MAX),
the index kept current across additions, deletes and a restart, and browsing by SQL indexes."""

import logging
import shutil
import sqlite3

import numpy as np
import pytest

import artlab.store.gallery
from artlab.store.gallery import Gallery
from benchmarks.gallery_scale import MODEL, TWIN_EVERY, fill_gallery, synthetic_works

WORKS = 10_000
TWINS = [(n + 1, n + 2) for n in range(0, WORKS - 1, TWIN_EVERY)]   # (work id, its planted twin's id)


@pytest.fixture(scope="module")
def museum(tmp_path_factory):
    folder = tmp_path_factory.mktemp("museum")
    fill_gallery(folder, WORKS, batch=2_500)
    return folder


def _exact_nearest(gallery: Gallery, work_id: int, k: int) -> list[int]:
    """The k nearest works to `work_id` by a plain scan of every stored embedding."""
    rows = gallery.all_rows()
    ids = np.array([r["id"] for r in rows])
    matrix = np.stack([np.frombuffer(r["embedding"], np.float32) for r in rows])
    scores = matrix @ gallery.embedding_of(work_id)
    return [int(i) for i in ids[np.argsort(-scores)] if i != work_id][:k]


def _similar_ids(gallery: Gallery, work_id: int, k: int = 6) -> list[int]:
    return [w.id for w, _ in gallery.similar(gallery.embedding_of(work_id), k=k, exclude_id=work_id, model=MODEL)]


def test_the_benchmark_fills_what_it_says(museum):
    gallery = Gallery(museum)
    assert gallery.count() == WORKS and gallery.integrity_ok()
    work = gallery.get(1234)
    assert work.model == MODEL and work.style == work.labels["style"][0][0]
    assert abs(np.linalg.norm(gallery.embedding_of(1234)) - 1) < 1e-5
    assert len(list((museum / "thumbs").glob("*.jpg"))) == WORKS


@pytest.mark.parametrize("path", ["exact scan", "similar-works index"])
def test_similar_works_find_the_planted_twins(museum, monkeypatch, path):
    if path == "similar-works index":
        monkeypatch.setattr(artlab.store.gallery, "EXACT_SEARCH_MAX", 1_000)
    gallery = Gallery(museum)
    for work_id, twin in TWINS:
        found = gallery.similar(gallery.embedding_of(work_id), k=6, exclude_id=work_id, model=MODEL)
        assert found[0][0].id == twin, work_id
        scores = [score for _, score in found]
        assert scores == sorted(scores, reverse=True) and work_id not in [w.id for w, _ in found]
        assert found[0][1] == pytest.approx(float(gallery.embedding_of(work_id) @ gallery.embedding_of(twin)), abs=1e-5)
    assert gallery.similar(gallery.embedding_of(1), model="another model") == []
    if path == "similar-works index":
        assert list((museum / "similar").glob("*.faiss"))


def test_the_index_ranks_exactly_what_it_proposes(museum, monkeypatch):
    """Past the exact limit the top result is the exact scan's on the twins, and on random works
    the index's answers are true neighbours (its candidates are re-ranked by exact cosine)."""
    monkeypatch.setattr(artlab.store.gallery, "EXACT_SEARCH_MAX", 1_000)
    gallery = Gallery(museum)
    for work_id in (17, 4321, 9876):
        exact = _exact_nearest(gallery, work_id, 200)
        found = _similar_ids(gallery, work_id)
        assert set(found) <= set(exact)     # random 512-d data is the index's worst case: near, if not nearest


def test_the_index_follows_additions_deletes_and_a_restart_built_once(museum, monkeypatch, caplog):
    monkeypatch.setattr(artlab.store.gallery, "EXACT_SEARCH_MAX", 1_000)
    monkeypatch.setattr("artlab.store.similar_index.TRAIN_SAMPLE", 2_000)   # learned from fewer works than it holds
    shutil.rmtree(museum / "similar", ignore_errors=True)
    caplog.set_level(logging.INFO, logger="artlab.store.similar_index")
    gallery = Gallery(museum)
    _similar_ids(gallery, 5)                               # the index exists now
    newcomer = synthetic_works(WORKS, 1)[0]
    newcomer.embedding = gallery.embedding_of(5) * 0.999 + 0.001 * gallery.embedding_of(6)
    other = Gallery(museum)                                # another process adds a work
    (new_id,) = other.add_batch([newcomer])
    assert _similar_ids(gallery, 5)[0] == new_id
    assert Gallery(museum)._candidates(gallery.embedding_of(5), MODEL, 6)[0].size   # a restart loads it
    other.delete(new_id)
    assert new_id not in _similar_ids(gallery, 5)
    assert [r.message for r in caplog.records].count("building the similar-works index of 10000 works "
                                                      "(model-synthetic-model.faiss)") == 1


def test_browse_filters_use_indexes_and_come_newest_first(museum):
    gallery = Gallery(museum)
    page = gallery.browse(style="baroque", subject="portrait", limit=60)
    assert page and all(w.style == "baroque" and w.subject == "portrait" for w in page)
    assert [w.id for w in page] == sorted((w.id for w in page), reverse=True)
    con = sqlite3.connect(museum / "gallery.sqlite")
    want = con.execute("SELECT COUNT(*) FROM works WHERE style='baroque' AND subject='portrait'").fetchone()[0]
    assert len(gallery.browse(style="baroque", subject="portrait", limit=WORKS)) == want
    for where in ("style=?", "subject=?", "style=? AND subject=?"):
        plan = " ".join(row[-1] for row in con.execute(
            f"EXPLAIN QUERY PLAN SELECT * FROM works WHERE {where} ORDER BY id DESC LIMIT 60",
            ("baroque", "portrait")[:where.count("?")]))
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (where, plan)
