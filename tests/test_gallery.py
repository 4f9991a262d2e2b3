"""The gallery store and `python -m artlab index`: real SQLite, tiny random-init models, tiny images."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image

from artlab.indexing import index_folder, read_meta
from artlab.inference.image import ArtModels
from artlab.paths import gallery_dir
from artlab.store.gallery import Gallery

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tiny_weights):
    return ArtModels(tiny_weights, "cpu")


@pytest.fixture()
def folder(tmp_path) -> Path:
    """Six distinct pictures, one exact duplicate in a sub-folder, one corrupt file and one empty file."""
    art = tmp_path / "art"
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (120, 60, 10)]
    for i, color in enumerate(colors):
        make_image(art / f"work_{i}.png", color, size=(64 + 8 * i, 48), pattern=i)
    (art / "copies").mkdir()
    (art / "copies" / "again.png").write_bytes((art / "work_2.png").read_bytes())
    (art / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (art / "empty.png").write_bytes(b"")
    (art / "meta.csv").write_text("file,title,artist,year\nwork_0.png,Red Study,A. Painter,1901\n"
                                  "work_1.png,Green Evening,,\n")
    return art


def test_index_reopen_same_rows_duplicates_skipped_corrupt_reported(folder, tmp_path, models):
    gallery = Gallery(tmp_path / "g")
    report = index_folder(gallery, models, folder, meta_csv=folder / "meta.csv", batch_size=4)
    assert report.added == 6
    assert report.skipped == 1                                  # copies/again.png: same bytes as work_2
    assert sorted(Path(e.split(":")[0]).name for e in report.errors) == ["broken.jpg", "empty.png"]
    rows = gallery.all_rows()
    gallery.close()

    reopened = Gallery(tmp_path / "g")
    assert reopened.all_rows() == rows
    assert reopened.integrity_ok()
    again = index_folder(reopened, models, folder)
    assert (again.added, again.skipped, len(again.errors)) == (0, 7, 2)
    assert reopened.count() == 6
    titled = {r["title"]: r for r in rows if r["title"]}
    assert titled["Red Study"]["artist"] == "A. Painter" and titled["Red Study"]["year"] == "1901"
    assert "Green Evening" in titled
    for row in rows:                                              # no half rows, thumbnails present
        assert row["style"] and row["subject"] and len(row["embedding"]) == 512 * 4
        assert reopened.thumb_path(row["sha256"]).is_file()
        assert "\\" not in row["path"] and Path(row["path"]).is_absolute()


def test_browse_filter_search_and_similar(folder, tmp_path, models):
    gallery = Gallery(tmp_path / "g")
    index_folder(gallery, models, folder, meta_csv=folder / "meta.csv")
    works = gallery.browse()
    assert len(works) == 6
    for work in works:
        same_style = gallery.browse(style=work.style)
        assert work.id in [w.id for w in same_style] and all(w.style == work.style for w in same_style)
        assert all(w.subject == work.subject for w in gallery.browse(subject=work.subject))
    assert [w.title for w in gallery.browse(query="red stu")] == ["Red Study"]
    assert gallery.browse(query="50%_") == []                          # LIKE wildcards are literal
    target = works[2]
    nearest = gallery.similar(gallery.embedding_of(target.id), k=3)
    assert nearest[0][0].id == target.id and nearest[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in nearest] == sorted((s for _, s in nearest), reverse=True)
    others = gallery.similar(gallery.embedding_of(target.id), k=10, exclude_id=target.id)
    assert len(others) == 5 and target.id not in [w.id for w, _ in others]
    # A near copy (a few pixels retouched) of a work finds that work first.
    from PIL import Image
    picture = Image.open(target.path).convert("RGB")
    picture.paste((0, 0, 0), (10, 10, 13, 13))
    query = models.analyze([picture], reconstruct=False)[0].embedding.numpy()
    assert gallery.similar(query, k=1)[0][0].id == target.id


def test_match_labels_prefers_agreeing_works(folder, tmp_path, models):
    gallery = Gallery(tmp_path / "g")
    index_folder(gallery, models, folder)
    work = gallery.browse()[0]
    probs = {head: {name: 1.0 if name == ranked[0][0] else 0.0 for name, _ in ranked}
             for head, ranked in work.labels.items()}
    best = gallery.match_labels(probs, k=6)

    def agreement(w):  # probability that w's labels are the query's (one-hot) labels, summed over heads
        return sum(dict(ranked)[work.labels[head][0][0]] for head, ranked in w.labels.items())

    # Tiny random models give near-uniform labels, so another work may agree better than `work`
    # itself: the best must be the one that agrees most.
    assert best[0][1] == pytest.approx(max(agreement(w) for w in gallery.browse()))
    assert agreement(best[0][0]) >= agreement(work) - 1e-9
    assert [s for _, s in best] == sorted((s for _, s in best), reverse=True)


def test_read_meta_needs_a_file_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("title,artist\nx,y\n")
    with pytest.raises(ValueError, match="'file' column"):
        read_meta(bad)


def test_default_location_is_outside_the_repo(monkeypatch, tmp_path):
    monkeypatch.delenv("ARTLAB_GALLERY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert gallery_dir() == tmp_path / "xdg" / "artlab" / "gallery"
    monkeypatch.setenv("ARTLAB_GALLERY", str(tmp_path / "mine"))
    assert gallery_dir() == tmp_path / "mine"
    monkeypatch.delenv("ARTLAB_GALLERY")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert ROOT not in gallery_dir().parents


def test_index_command_reports_and_survives_a_kill(folder, tmp_path, tiny_weights, capsys):
    from artlab.cli import main

    gallery_dir = tmp_path / "g"
    code = main(["index", str(folder), "--gallery", str(gallery_dir), "--weights", str(tiny_weights), "--batch", "2"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "6 added, 1 already in the gallery, 2 unreadable" in out
    assert "broken.jpg" in err and "Traceback" not in err
    assert main(["index", str(tmp_path / "nowhere"), "--gallery", str(gallery_dir)]) == 2
    assert "not a folder" in capsys.readouterr().err

    env = {**os.environ, "PYTHONPATH": str(ROOT), "ARTLAB_WEIGHTS": str(tiny_weights)}
    # Many more pictures, small batches; SIGKILL once some batches are committed.
    many = tmp_path / "many"
    for i in range(200):
        make_image(many / f"{i:03d}.png", (i % 256, (7 * i) % 256, (13 * i) % 256), size=(40, 40), pattern=i % 5)
    proc = subprocess.Popen([sys.executable, "-m", "artlab", "index", str(many), "--gallery", str(gallery_dir),
                             "--batch", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    db = gallery_dir / "gallery.sqlite"
    while time.time() < deadline and proc.poll() is None:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT COUNT(*) FROM works").fetchone()[0] >= 12:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gallery = Gallery(gallery_dir)
    assert gallery.integrity_ok()
    rows = gallery.all_rows()
    assert 12 <= len(rows) < 206
    assert all(np.frombuffer(r["embedding"], np.float32).shape == (512,) and r["labels"] for r in rows)
    assert all(gallery.thumb_path(r["sha256"]).is_file() for r in rows)


@pytest.fixture(scope="module")
def newer_models(tmp_path_factory, tiny_weights):
    """Another classifier (other weights, same labels): what an upgrade of the shipped weights looks like."""
    import shutil

    import torch

    from artlab.checkpoints import read_card, save_checkpoint
    from artlab.models.classifier import ArtClassifier

    folder = tmp_path_factory.mktemp("newer")
    torch.manual_seed(1)
    card = read_card(tiny_weights / "art_classifier")
    save_checkpoint(ArtClassifier({h: len(v) for h, v in card["labels"].items()}).eval(),
                    folder / "art_classifier", card, dtype=torch.float32)
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_weights / f"art_autoencoder{suffix}", folder)
    return ArtModels(folder, "cpu")


def test_new_weights_leave_old_embeddings_out_until_refresh(folder, tmp_path, models, newer_models, tiny_weights,
                                                            capsys):
    from artlab.cli import main
    from artlab.indexing import refresh

    gallery = Gallery(tmp_path / "g")
    index_folder(gallery, models, folder)
    assert models.model_id != newer_models.model_id
    assert {r["model"] for r in gallery.all_rows()} == {models.model_id}
    query = newer_models.analyze([models.prepare(folder / "work_3.png")])[0]
    assert gallery.other_model_count(newer_models.model_id) == 6
    assert gallery.similar(query.embedding.numpy(), k=3, model=newer_models.model_id) == []
    assert len(gallery.similar(query.embedding.numpy(), k=3, model=models.model_id)) == 3

    (folder / "work_0.png").unlink()          # an original moved away: its thumbnail stands in
    report = refresh(gallery, newer_models)
    assert (report.added, report.errors) == (6, [])
    assert gallery.other_model_count(newer_models.model_id) == 0
    target = next(r for r in gallery.all_rows() if r["path"].endswith("work_3.png"))
    assert np.allclose(np.frombuffer(target["embedding"], dtype=np.float32), query.embedding.numpy(), atol=1e-5)
    assert gallery.similar(query.embedding.numpy(), k=1, model=newer_models.model_id)[0][0].id == target["id"]
    gallery.close()

    # The command, with the first model again: all six go back to it. Without a folder or --refresh: an error.
    assert main(["index", "--refresh", "--gallery", str(tmp_path / "g"), "--weights",
                 str(tiny_weights)]) == 0
    assert "6 works re-analysed" in capsys.readouterr().out
    assert main(["index", "--gallery", str(tmp_path / "g"), "--weights", str(tiny_weights)]) == 2


def test_version_1_gallery_gains_the_model_column(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    with sqlite3.connect(folder / "gallery.sqlite") as conn:
        conn.executescript("""
            CREATE TABLE works (id INTEGER PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
                title TEXT, artist TEXT, year TEXT, style TEXT NOT NULL, subject TEXT NOT NULL,
                labels TEXT NOT NULL, psnr REAL, embedding BLOB NOT NULL, added TEXT NOT NULL);
            PRAGMA user_version=1;""")
        conn.execute("INSERT INTO works (path, sha256, style, subject, labels, embedding, added) "
                     "VALUES ('/x.jpg', 'abc', 'baroque', 'portrait', '{}', ?, '2026-01-01')",
                     (np.ones(4, np.float32).tobytes(),))
    gallery = Gallery(folder)
    assert gallery.all_rows()[0]["model"] is None
    assert gallery.other_model_count("anything") == 1
    assert gallery.similar(np.ones(4), k=1, model=None)[0][0].sha256 == "abc"
    assert gallery.similar(np.ones(4), k=1, model="anything") == []
    assert gallery._conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_index_limit_takes_a_spread_of_the_folder(tmp_path, tiny_weights, capsys):
    """`index DIR --limit N`: at most N images, spread over the folder, so every class folder gets some."""
    from artlab.cli import main
    from artlab.cli.gallery import _spread

    assert _spread(list(range(10)), 4) == [0, 2, 5, 7] and _spread(list(range(3)), 5) == [0, 1, 2]
    for c, name in enumerate(("a", "b", "c")):
        for k in range(4):
            make_image(tmp_path / "classes" / name / f"{k}.png", (60 * k, 80 * c, 200), size=(32, 32), pattern=k)
    gallery_dir = tmp_path / "g"
    assert main(["index", str(tmp_path / "classes"), "--limit", "3", "--gallery", str(gallery_dir),
                 "--weights", str(tiny_weights), "--no-bulk"]) == 0
    assert "3 added" in capsys.readouterr().out
    assert {Path(w.path).parent.name for w in Gallery(gallery_dir).browse()} == {"a", "b", "c"}
