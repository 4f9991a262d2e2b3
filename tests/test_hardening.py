"""Issue 19, one test per finding: the polyglot upload, HTML in titles (in a real browser), request
bodies and data: URIs, the Train tab's zip intake, stale temp folders, the curator password, model
cards, and the kiosk's routes and errors.

An app runs in-process per mode (tiny random-init weights, max_upload_mb=1: bodies over 1.4 MB are
refused). The heavy forms (many parallel 200 MB bodies) are in benchmarks/, not here.
"""

import base64
import fcntl
import io
import json
import logging
import os
import re
import socket
import stat
import struct
import time
import zipfile
import zlib
from pathlib import Path

import httpx
import pytest
from conftest import make_image
from gradio_client import Client, handle_file
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE_TITLE = ('<form id="injected-form" action="http://127.0.0.1:9/steal"><input id="injected-password" '
                 'type="password"></form><img id="injected-pixel" src="http://127.0.0.1:9/pixel.gif">'
                 '<div id="injected-overlay" style="position:fixed;inset:0;z-index:9999">x</div>')
HOSTILE_ARTIST = "![pixel](http://127.0.0.1:9/p.png) [click](http://127.0.0.1:9/) $$\\rule{99em}{99em}$$"
BIDI_YEAR = "abc\u202egpj.exe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(weights, tmp_path_factory, kiosk: bool):
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import serve

    ctx = AppContext(Lab(weights=str(weights), gallery_dir=str(tmp_path_factory.mktemp("gallery")), device="cpu", models_dir=str(tmp_path_factory.mktemp("models"))), kiosk=kiosk, max_upload_mb=1)
    port = free_port()
    return ctx, serve(ctx, "127.0.0.1", port, block=False), f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def app(tiny_weights, tmp_path_factory):
    ctx, demo, url = start(tiny_weights, tmp_path_factory, kiosk=False)
    ctx.lab.models()                       # loaded before any memory is measured
    yield ctx, url, Client(url, verbose=False)
    demo.close()


@pytest.fixture(scope="module")
def kiosk(tiny_weights, tmp_path_factory):
    ctx, demo, url = start(tiny_weights, tmp_path_factory, kiosk=True)
    yield url
    demo.close()


def polyglot(path: Path) -> Path:
    """A real JPEG with an HTML page appended: Pillow reads the picture, a browser the page."""
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (20, 120, 200)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue() + b"<html><script>fetch('/config')</script></html>")
    return path


def call(url: str, api_name: str, data: list) -> tuple[int, str]:
    """/gradio_api/call: (status of the join, the event stream's text)."""
    with httpx.Client(timeout=60) as http:
        joined = http.post(f"{url}gradio_api/call/{api_name}", json={"data": data})
        if joined.status_code != 200:
            return joined.status_code, joined.text
        return 200, http.get(f"{url}gradio_api/call/{api_name}/{joined.json()['event_id']}").text


# ------------------------------------------------------------------ 1. stored XSS

def test_polyglot_upload_is_kept_as_an_image_and_never_served_as_html(app, tmp_path):
    ctx, url, client = app
    upload = polyglot(tmp_path / "x.html")
    assert "Added" in client.predict(handle_file(str(upload)), "Harbour", "", "", api_name="/add_to_gallery")
    gallery = ctx.lab.gallery()
    kept = sorted(p.name for p in gallery.works_dir.iterdir() if not p.name.startswith("."))
    assert len(kept) == 1 and kept[0].endswith(".jpg"), kept
    stored = gallery.works_dir / kept[0]
    with httpx.Client(timeout=10) as http:
        for path in (stored, stored.with_suffix(".html")):
            response = http.get(f"{url}gradio_api/file={path}")
            assert response.status_code in (403, 404), (path.name, response.status_code)
        thumb = http.get(f"{url}gradio_api/file={gallery.browse()[0].thumb}")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        # The upload itself, in Gradio's (private) cache: downloaded, never rendered.
        with open(upload, "rb") as f:
            cached = http.post(f"{url}gradio_api/upload", files={"files": ("x.html", f, "text/html")}).json()[0]
        response = http.get(f"{url}gradio_api/file={cached}")
        assert "text/html" not in response.headers.get("content-type", "")


def test_only_thumbnails_and_assets_are_served_folders(app):
    ctx, _, _ = app
    from artlab.store.gallery import WORKS_DIR

    assert not any(Path(p).name == WORKS_DIR for p in ctx.lab.public_folders())


# ------------------------------------------------------------------ 2. HTML injection, in a browser

@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed (apt-get install -y chromium)")
def test_html_in_titles_shows_as_text_in_a_real_browser(app, tmp_path):
    from playwright.sync_api import sync_playwright

    ctx, url, client = app
    picture = make_image(tmp_path / "hostile.png", (90, 40, 160), size=(80, 64), pattern=4)
    client.predict(handle_file(str(picture)), HOSTILE_TITLE, HOSTILE_ARTIST, BIDI_YEAR, api_name="/add_to_gallery")
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1400})
            page.on("request", lambda r: outside.append(r.url) if "127.0.0.1:9/" in r.url else None)
            page.goto(url)
            page.get_by_role("tab", name="Gallery").click()
            page.get_by_text(re.compile(r"Works \d+–\d+ of \d+")).wait_for(timeout=30_000)
            page.locator("#gallery-grid button.thumbnail-item").first.click()
            detail = page.locator(".work-detail").first
            detail.get_by_text(re.compile(r"Added \d{4}-")).wait_for(timeout=30_000)   # the detail is shown
            injected = page.query_selector_all("#injected-form, #injected-password, #injected-pixel, "
                                               "#injected-overlay, .work-detail form, .work-detail img[src*='127.0.0.1:9'], "
                                               ".work-detail a[href*='127.0.0.1:9'], .work-detail .katex")
            assert injected == []
            text = detail.inner_text()
            assert HOSTILE_TITLE[:40] in text and "![pixel](http://127.0.0.1:9/p.png)" in text
            assert "abcgpj.exe" in text and "\u202e" not in text
        finally:
            browser.close()
    assert outside == []                                          # no tracking pixel was fetched


def test_train_tab_notes_escape_class_and_entry_names(tmp_path):
    from artlab.ui import train_handlers as train_tab

    evil_class = '<img src="http://127.0.0.1:9/c.gif">'
    session = train_tab.add_class(evil_class, None)[0]
    png = make_image(tmp_path / "a.png").read_bytes()
    archive = tmp_path / "classes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cats/1.png", png)
        z.writestr("cats/<img src=x onerror=alert(1)>.txt", b"not a picture")
        z.writestr("cats/abc\u202egpj.exe", b"nor this")
    notes = train_tab.add_zip(str(archive), session)[2]
    assert "<img" not in notes and "](" not in notes and "\u202e" not in notes
    assert "abcgpj.exe" in notes and "&#60;img" in notes
    assert train_tab.add_class("abc\u202egpj", session)[3]["value"] == "abcgpj"   # the folder's name too
    session.close()


# ------------------------------------------------------------------ 3. request bodies

def _rss_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _peak_growth_mb(send) -> float:
    """How far this process's RSS peaked above where it started while `send` ran (the app runs here)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")             # restart the peak (VmHWM) from now
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    before = _rss_kb("VmRSS")
    send()
    return (_rss_kb("VmHWM") - before) / 1024


def _post(url: str, content, headers: dict) -> httpx.Response:
    with httpx.Client(timeout=60) as http:
        return http.post(f"{url}gradio_api/queue/join", content=content,
                         headers={"content-type": "application/json", **headers})


def test_large_bodies_are_refused_before_they_are_read(app):
    _, url, _ = app
    chunk = b" " * 2**20
    body_mb = 64

    def chunks():
        for _ in range(body_mb):
            yield chunk

    answers = []
    growth = _peak_growth_mb(lambda: answers.extend([
        _post(url, chunks(), {"content-length": str(body_mb * 2**20)}),     # declared
        _post(url, chunks(), {}),                                         # streamed, no length
    ]))
    assert growth < 24, f"RSS rose {growth:.0f} MB for a refused {body_mb} MB body"
    assert [a.status_code for a in answers] == [413, 413], [a.text[:200] for a in answers]
    assert "too large" in answers[0].json()["detail"]


def test_data_uris_are_refused_and_inline_bodies_held_to_the_upload_limit(app):
    _, url, _ = app
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "PNG")
    small = {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
             "meta": {"_type": "gradio.FileData"}}
    status, events = call(url, "analyze_artwork", [small])
    assert status == 200 and "event: error" in events and "data: URI" in events
    big = {"url": "data:image/png;base64," + "A" * (2 * 2**20), "meta": {"_type": "gradio.FileData"}}
    status, text = call(url, "analyze_artwork", [big])                 # over 1 MB of upload limit
    assert status == 413, text[:200]


# ------------------------------------------------------------------ 4. the Train tab's zip intake

def _sparse_zip(path: Path, entries: dict[str, int]) -> Path:
    """A zip of entries of whole megabytes of zeros, written without ever holding or writing them:
    one deflate block of 1 MB of zeros (self-contained: full flush) repeated, then a final block."""
    zeros = bytes(2**20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    out, directory = io.BytesIO(), []
    for name, size in entries.items():
        megabytes, crc = size // 2**20, 0
        for _ in range(megabytes):
            crc = zlib.crc32(zeros, crc)
        packed, raw, offset = len(block) * megabytes + len(final), name.encode(), out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, packed, size, len(raw), 0) + raw)
        out.write(block * megabytes + final)
        directory.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, packed, size,
                                     len(raw), 0, 0, 0, 0, 0, offset) + raw)
    central, start = b"".join(directory), out.tell()
    out.write(central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                                    start, 0))
    path.write_bytes(out.getvalue())
    return path


def test_sparse_zip_of_two_992_mb_zero_files_is_refused_before_writing(tmp_path):
    from artlab.curation import CurationSession
    from artlab.ui import train_handlers as train_tab

    archive = _sparse_zip(tmp_path / "sparse.zip", {"cats/a.jpg": 992 * 2**20, "dogs/b.jpg": 992 * 2**20})
    assert archive.stat().st_size < 4 * 2**20
    session = CurationSession()
    started = time.monotonic()
    notes = train_tab.add_zip(str(archive), session)[2]
    assert time.monotonic() - started < 5
    assert "❌" in notes and "zip bomb" in notes
    written = sum(p.stat().st_size for p in session.folder.rglob("*") if p.is_file())
    assert written < 2**20
    session.close()


def test_zip_entries_over_the_image_limit_or_unreadable_are_skipped_unwritten(tmp_path, monkeypatch):
    from artlab.store import uploads

    png = make_image(tmp_path / "a.png").read_bytes()
    archive = _sparse_zip(tmp_path / "big.zip", {"cats/huge.jpg": 8 * 2**20})
    with zipfile.ZipFile(archive, "a") as z:
        for name, data in {"cats/1.png": png, "dogs/1.png": png, "dogs/zeros.jpg": bytes(5000)}.items():
            z.writestr(name, data)
    result = uploads.import_zip(archive, tmp_path / "out", max_entry_bytes=4 * 2**20)
    assert result.counts() == {"cats": 1, "dogs": 1}
    assert any("huge.jpg" in s and "MB an image may take" in s for s in result.skipped)
    assert any("zeros.jpg" in s for s in result.skipped)
    assert sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file()) == 2 * len(png)


def test_a_sessions_images_are_capped_in_all(tmp_path, monkeypatch):
    from artlab import curation
    from artlab.ui import train_handlers as train_tab

    pictures = [make_image(tmp_path / f"{i}.png", (10, 90, 40), size=(40, 30)) for i in range(6)]
    size = pictures[0].stat().st_size
    monkeypatch.setattr(curation, "MAX_SESSION_BYTES", 3 * size + size // 2)
    session = train_tab.add_class("cats", None)[0]
    notes = train_tab.add_class_images([str(p) for p in pictures], "cats", session)[2]
    assert session.counts()["cats"] == 3 and "over the" in notes
    session.close()


def test_stale_temp_folders_are_removed_and_live_ones_kept(tmp_path):
    from artlab.workdirs import LOCK_NAME, remove_stale

    now = time.time()
    dead, live = tmp_path / "artlab-app-dead", tmp_path / "artlab-app-live"
    old_train, new_train = tmp_path / "artlab-train-old", tmp_path / "artlab-outputs-new"
    other = tmp_path / "not-ours"
    for folder in (dead, live, old_train, new_train, other):
        (folder / "classes").mkdir(parents=True)
        (folder / LOCK_NAME).touch()
    os.utime(old_train, (now - 7200, now - 7200))
    os.utime(other, (now - 7200, now - 7200))
    (tmp_path / "artlab-app-link").symlink_to(other)
    with open(live / LOCK_NAME, "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)          # its process is alive
        removed = remove_stale(tmp_path, now=now)
    assert sorted(p.name for p in removed) == ["artlab-app-dead", "artlab-train-old"]
    assert live.exists() and new_train.exists() and other.exists() and (tmp_path / "artlab-app-link").exists()


def test_the_app_keeps_gradios_files_in_a_private_folder(app, tmp_path):
    import tempfile

    from artlab.workdirs import process_dir

    _, url, _ = app
    private = Path(os.environ["GRADIO_TEMP_DIR"])
    assert private.is_relative_to(process_dir()) and stat.S_IMODE(process_dir().stat().st_mode) == 0o700
    shared = Path(tempfile.gettempdir()) / "gradio" / f"left-by-another-{os.getpid()}"
    shared.mkdir(parents=True, exist_ok=True)
    leftover = shared / "notes.txt"
    leftover.write_text("another process's file")
    try:
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{url}gradio_api/file={leftover}").status_code in (403, 404)
    finally:
        leftover.unlink()
        shared.rmdir()


# ------------------------------------------------------------------ 5. the curator password

class Clock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class Visitor:
    def __init__(self, host):
        self.client = type("Client", (), {"host": host})()


def test_curator_password_is_throttled_per_client_and_logged(tiny_weights, tmp_path, monkeypatch, caplog):
    import shutil

    from artlab.curation import CurationSession
    from artlab.curator import CuratorGate
    from artlab.lab import Lab
    from artlab.ui.train_handlers import make_publish

    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "correct horse")
    clock = Clock()
    gate = CuratorGate(clock=lambda: clock.now, sleep=clock.sleep)
    session = CurationSession(tmp_path / "visitor")
    session.model = str(shutil.copytree(tiny_weights, tmp_path / "mine"))
    publish = make_publish(Lab(models_dir=str(tmp_path / "models")), gate)
    attacker, curator = Visitor("10.0.0.66"), Visitor("10.0.0.7")
    caplog.set_level(logging.WARNING, logger="artlab.curator")
    for _ in range(gate.MAX_FAILURES):
        assert "wrong or missing" in publish("guess", "x", session, request=attacker)
    assert clock.slept == [0.25, 0.5, 1.0, 2.0]                   # doubling, then the lockout at once
    wrong = [r for r in caplog.records if "wrong password from 10.0.0.66" in r.getMessage()]
    assert len(wrong) == gate.MAX_FAILURES - 1 and any("locked out" in r.getMessage() for r in caplog.records)
    refused = publish("correct horse", "x", session, request=attacker)   # even the right one, while locked out
    assert "too many wrong passwords" in refused and "Only a curator" in refused
    assert "is now the model for everyone" in publish("correct horse", "colours", session, request=curator)
    clock.now += gate.LOCKOUT_S
    assert "is now the model for everyone" in publish("correct horse", "colours", session, request=attacker)


def test_tries_sent_in_parallel_are_refused_unread(monkeypatch):
    from artlab.curator import CuratorGate

    monkeypatch.setenv("ARTLAB_CURATOR_PASSWORD", "correct horse")
    now = [0.0]
    gate = CuratorGate(clock=lambda: now[0], sleep=lambda s: None)   # answers not yet sent: time stands
    assert gate.check("guess", "10.0.0.66") == "wrong or missing password"
    assert "try again in 1 s" in gate.check("correct horse", "10.0.0.66")


# ------------------------------------------------------------------ 6. model cards

def _model_zip(folder: Path, tiny_weights: Path, name: str, card_text: str) -> Path:
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.write(tiny_weights / "art_classifier.safetensors", "art_classifier.safetensors")
        z.writestr("art_classifier.json", card_text)
    return path


def _card(tiny_weights: Path, **changes) -> str:
    card = json.loads((tiny_weights / "art_classifier.json").read_text())
    for key, value in changes.items():
        if key in ("embed_dim", "texture"):
            card["config"][key] = value
        else:
            card[key] = value
    return json.dumps(card)


@pytest.mark.parametrize("name, change, message", [
    ("config-string", {"config": "embed_dim=512"}, "'config' must be a JSON object"),
    ("config-list", {"config": [512, True]}, "'config' must be a JSON object"),
    ("negative", {"embed_dim": -5}, "'embed_dim' must be a whole number"),
    ("float", {"embed_dim": 1e9}, "'embed_dim' must be a whole number"),
    ("huge", {"embed_dim": 1_000_000_000}, "'embed_dim' must be a whole number"),
    ("mid-size", {"embed_dim": 300_000}, "'embed_dim' must be a whole number"),
    ("texture", {"texture": "yes"}, "'texture' must be true or false"),
    ("labels", {"labels": {"style": "abc"}}, "labels of head"),
    ("input-size", {"input_size": 10**7}, "'input_size' must be a whole number"),
    ("nested-deep", None, "nested too deeply"),
    ("nested-40", None, "nested more than 32 levels"),
])
def test_malformed_model_cards_get_one_line_and_allocate_nothing(tiny_weights, tmp_path, capsys, monkeypatch,
                                                                name, change, message):
    import artlab.inference.image
    from artlab.cli import main

    built = []
    real = artlab.inference.image.ArtClassifier
    monkeypatch.setattr(artlab.inference.image, "ArtClassifier", lambda *a, **k: built.append(k) or real(*a, **k))
    if name == "nested-deep":
        text = _card(tiny_weights)[:-1] + ', "notes": ' + "[" * 100_000 + "]" * 100_000 + "}"
    elif name == "nested-40":
        text = _card(tiny_weights)[:-1] + ', "notes": ' + "[" * 40 + "]" * 40 + "}"
    else:
        text = _card(tiny_weights, **change)
    upload = _model_zip(tmp_path, tiny_weights, name, text)
    capsys.readouterr()
    code = main(["models", "import", str(upload), "--models", str(tmp_path / "models")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert message in err, err
    assert built == [], "a model was built from a card that was not checked first"
    assert not (tmp_path / "models" / name).exists()


def test_a_good_card_still_imports(tiny_weights, tmp_path, capsys):
    from artlab.cli import main

    upload = _model_zip(tmp_path, tiny_weights, "good", _card(tiny_weights))
    assert main(["models", "import", str(upload), "--models", str(tmp_path / "models")]) == 0
    assert "imported: good/v1" in capsys.readouterr().out


# ------------------------------------------------------------------ 7. kiosk routes, errors, text types

def test_kiosk_closes_the_extra_routes_and_answers_404_for_unknown_endpoints(kiosk):
    with httpx.Client(timeout=10) as http:
        for route in ("gradio_api/info", "gradio_api/deep_link?session_hash=x", "gradio_api/openapi.json"):
            assert http.get(kiosk + route).status_code == 404, route
        assert http.get(kiosk + "config").status_code == 200          # the page itself still loads
        unknown = [http.post(kiosk + f"gradio_api/{route}", json={"data": ["x"], "session_hash": "s"})
                   for route in ("run/nope", "call/nope", "call/v2/nope")]
        unknown.append(http.post(kiosk + "gradio_api/queue/join",
                                 json={"data": ["x"], "fn_index": 999, "session_hash": "s"}))
    assert [r.status_code for r in unknown] == [404] * 4, [r.text[:100] for r in unknown]


def test_normal_mode_refuses_lists_as_text_and_hides_pydantic(app):
    _, url, _ = app
    for value in (["a", "b"], {"x": 1}):
        status, events = call(url, "analyze_text", [value])
        assert status == 200 and "event: error" in events and "takes text" in events, events
    for value in ("hello", [1, 2], {"path": "/etc/passwd"}):
        status, events = call(url, "analyze_artwork", [value])
        assert status == 200 and "event: error" in events, events
        assert "validation error" not in events and "pydantic" not in events and "/etc/passwd" not in events
        assert "do not fit" in events
    with httpx.Client(timeout=10) as http:
        response = http.post(f"{url}gradio_api/queue/join", json={"data": "not a list"})
    assert response.status_code == 422 and "input" not in response.text and "list_type" not in response.text


def test_a_picture_input_never_reads_a_server_path_it_was_not_given(app):
    """The picture inputs hand their handlers the upload's path undecoded (widgets.picture_input):
    a request naming another server file must be refused, never read (nor its existence told)."""
    _, url, _ = app
    for value in ({"path": "/etc/passwd"}, {"path": str(Path(__file__).resolve().parents[1] / "assets" / ".." / "README.md")}):
        status, events = call(url, "analyze_artwork", [value])
        assert status == 200 and "event: error" in events and "do not fit" in events, events
        assert "passwd" not in events and "README" not in events
