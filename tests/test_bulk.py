"""The bulk indexer (artlab/bulk.py) gives the ordinary index's result: run here on the CPU, where
the same pipeline decodes with libjpeg-turbo instead of nvJPEG."""

import io
import sqlite3

import numpy as np
import pytest
import torch
from bad_images import jpeg_bytes, make_bad_files
from conftest import make_image
from PIL import Image

from artlab.bulk import _decode_jpegs as _strict_decoder
from artlab.bulk import bulk_index
from artlab.images import list_images
from artlab.indexing import index_paths
from artlab.inference.image import ArtModels
from artlab.store.gallery import Gallery


@pytest.fixture(scope="module")
def models(tiny_weights):
    return ArtModels(tiny_weights, "cpu", autoencoder=False)


def _jpeg(path, color, size, mode="RGB", exif_orientation=None, pattern=0):
    make_image(path.with_suffix(".png"), color, size=size, pattern=pattern)
    im = Image.open(path.with_suffix(".png")).convert(mode)
    path.with_suffix(".png").unlink()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    im.save(path, "JPEG", quality=92, **kwargs)
    return path


@pytest.fixture()
def folder(tmp_path):
    """JPEGs of every kind the two decoders split between, and files neither can use."""
    art = tmp_path / "art"
    art.mkdir()
    for i in range(7):
        _jpeg(art / f"rgb_{i}.jpg", (40 * i, 200 - 20 * i, 90), (96 + 16 * i, 64), pattern=i)
    _jpeg(art / "grey.jpg", (120, 120, 120), (80, 60), mode="L", pattern=2)
    _jpeg(art / "cmyk.jpg", (200, 40, 40), (70, 50), mode="CMYK", pattern=3)
    _jpeg(art / "rotated.jpg", (30, 30, 200), (120, 40), exif_orientation=6, pattern=4)
    make_image(art / "flat.png", (10, 150, 10), size=(64, 64), pattern=5)
    (art / "copy.jpg").write_bytes((art / "rgb_1.jpg").read_bytes())
    good = (art / "rgb_2.jpg").read_bytes()
    (art / "truncated.jpg").write_bytes(good[: len(good) // 2])   # header fine, data cut
    (art / "empty.jpg").write_bytes(b"")
    (art / "text.jpg").write_bytes(b"not a picture at all")
    return art


def _rows(gallery_dir):
    con = sqlite3.connect(gallery_dir / "gallery.sqlite")
    return {sha: (style, subject, np.frombuffer(emb, np.float32), path.rsplit("/", 1)[-1])
            for sha, style, subject, emb, path in con.execute("SELECT sha256, style, subject, embedding, path FROM works")}


def test_bulk_index_matches_the_ordinary_index(folder, tmp_path, models, monkeypatch):
    import artlab.bulk

    decoded = []
    real = artlab.bulk._decode_jpegs
    monkeypatch.setattr(artlab.bulk, "_decode_jpegs", lambda blobs, device: decoded.extend(real(blobs, device)) or
                        decoded[len(decoded) - len(blobs):])
    paths = list_images(folder)
    ordinary = index_paths(Gallery(tmp_path / "a"), models, paths, root=folder, batch_size=4)
    bulk = bulk_index(Gallery(tmp_path / "b"), models, paths, root=folder, batch_size=4, workers=3)
    assert (bulk.added, bulk.skipped) == (ordinary.added, ordinary.skipped) == (11, 1)
    assert sorted(e.split(":")[0] for e in bulk.errors) == sorted(e.split(":")[0] for e in ordinary.errors)
    assert len(bulk.errors) == 3 and any("truncated.jpg" in e for e in bulk.errors)
    # RGB, grey and rotated JPEGs went through the batch decoder; the truncated one (its segments
    # cut off), CMYK, PNG and non-JPEGs never went there: the one loader judged them.
    assert sum(d is not None for d in decoded) == 9 and decoded.count(None) == 0
    want, got = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert want.keys() == got.keys()
    for sha, (style, subject, embedding, name) in want.items():   # letterboxed to the same bytes
        assert (style, subject) == got[sha][:2] and np.allclose(embedding, got[sha][2], atol=1e-5), name


def test_bulk_thumbnails_are_upright_and_small(folder, tmp_path, models):
    gallery = Gallery(tmp_path / "g")
    bulk_index(gallery, models, [folder / "rotated.jpg", folder / "rgb_6.jpg"], batch_size=2)
    sizes = {}
    for work in gallery.browse():
        with Image.open(work.thumb) as thumb:
            sizes[work.path.rsplit("/", 1)[-1]] = thumb.size
    assert sizes["rotated.jpg"] == (40, 120)     # EXIF orientation 6: stored 120x40, shown 40x120
    assert max(sizes["rgb_6.jpg"]) <= 320


def test_bulk_index_again_skips_everything(folder, tmp_path, models):
    gallery = Gallery(tmp_path / "g")
    paths = list_images(folder)
    first = bulk_index(gallery, models, paths, batch_size=5)
    again = bulk_index(gallery, models, paths, batch_size=5)
    assert first.added == 11 and again.added == 0 and again.skipped == 12
    assert gallery.count() == 11 and gallery.integrity_ok()


def test_index_command_bulk(folder, tmp_path, tiny_weights, capsys):
    from artlab.cli import main

    code = main(["index", str(folder), "--gallery", str(tmp_path / "g"), "--weights", str(tiny_weights),
                 "--bulk", "--batch", "4", "--workers", "2", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0
    assert "11 added, 1 already in the gallery, 3 unreadable" in out.out
    assert "truncated.jpg" in out.err and "empty.jpg" in out.err


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no GPU on this machine")
def test_bulk_index_on_the_gpu_matches_the_cpu(folder, tmp_path, tiny_weights, models):
    """nvJPEG decoding, pinned staging and device-side letterboxing agree with the CPU pipeline."""
    paths = list_images(folder)
    on_cpu = bulk_index(Gallery(tmp_path / "cpu"), models, paths, batch_size=4)
    report = bulk_index(Gallery(tmp_path / "gpu"), ArtModels(tiny_weights, "cuda", autoencoder=False), paths,
                        batch_size=4)
    assert report.added == 11 and sorted(report.errors) == sorted(on_cpu.errors) and len(report.errors) == 3
    want, got = _rows(tmp_path / "cpu"), _rows(tmp_path / "gpu")
    assert want.keys() == got.keys()
    for sha, row in want.items():
        assert float(row[2] @ got[sha][2]) > 0.98, row[3]


def _lenient_decoder(blobs, device):
    """A batch decoder that, like nvJPEG, hands back a picture (grey where the data is missing) for a
    cut-off JPEG instead of an error."""
    out = []
    for blob, image in zip(blobs, _strict_decoder(blobs, device)):
        if image is None:
            width, height = Image.open(io.BytesIO(bytes(blob.numpy()))).size
            image = torch.full((3, height, width), 128, dtype=torch.uint8)
        out.append(image)
    return out


@pytest.mark.parametrize("decoder", ["libjpeg-turbo", "lenient, as nvJPEG"])
def test_bulk_refuses_the_bad_files_the_loader_refuses_with_its_words(tmp_path, models, monkeypatch, decoder):
    """Whatever the batch decoder would swallow, the bulk path rejects exactly what the one loader
    rejects, with the same one-line reasons (the GPU path let a damaged file through)."""
    import artlab.bulk

    if decoder != "libjpeg-turbo":
        monkeypatch.setattr(artlab.bulk, "_decode_jpegs", _lenient_decoder)
    art = tmp_path / "art"
    bad = make_bad_files(art)
    for i in range(3):
        _jpeg(art / f"good_{i}.jpg", (60 * i, 90, 200 - 40 * i), (80, 60), pattern=i)
    cut = (art / "good_0.jpg").read_bytes()
    (art / "cut_in_the_scan.jpg").write_bytes(cut[: len(cut) - 40])
    paths = sorted(art.iterdir()) + [bad["missing"]]
    ordinary = index_paths(Gallery(tmp_path / "a"), models, paths, batch_size=4)
    bulk = bulk_index(Gallery(tmp_path / "b"), models, paths, batch_size=4, workers=2)
    assert sorted(bulk.errors) == sorted(ordinary.errors)
    assert bulk.added == ordinary.added == 3 and len(bulk.errors) == 7
    assert all(len(e.splitlines()) == 1 for e in bulk.errors)


def test_jpeg_walk_finds_cut_files_and_passes_whole_ones():
    from artlab.bulk import jpeg_complete

    whole = jpeg_bytes(size=(300, 200))
    progressive = jpeg_bytes(size=(300, 200), progressive=True)
    assert jpeg_complete(whole) and jpeg_complete(progressive) and jpeg_complete(whole + b"trailing bytes")
    for data in (whole, progressive):
        assert not any(jpeg_complete(data[:cut]) for cut in (2, 3, 400, len(data) // 2, len(data) - 2))
