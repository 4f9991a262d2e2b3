"""A real browser: Debian's Chromium, headless, driven by Playwright for Python, on the app as a
visitor meets it (tiny random-init models, a gallery of three works).

At a phone's size (390 x 844; 360 and 430 wide for the width) and a desktop's: the page is never
wider than the screen and is one column on the phone, with the results first after an analysis; a
text file named .jpg gets one plain sentence (no server path, no framework text, no error badge);
a Chinese browser opens in Chinese and shows no string of the English table after an analysis,
and the switch re-renders the results; Train -> "for me" -> "Start over" -> Artwork falls back to
the usual model with a message. The kiosk: tests/test_browser_kiosk.py.

Skipped only when /usr/bin/chromium is absent (CI installs it: `apt-get install -y chromium`);
Playwright's own browser download is never used. Screenshots go to pytest's tmp dir, or to
$ARTLAB_SHOTS when set.
"""

import os
import re
import socket
import zipfile
from pathlib import Path

import pytest
from conftest import make_image

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian's Chromium is not installed (apt-get install -y chromium)")]
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1360, "height": 1000}
SIZES = {"phone": PHONE, "desktop": DESKTOP}
FRAMEWORK_TEXT = ("/tmp", "Error", "error", "preprocess", "Traceback", "UnidentifiedImageError", "index 0")


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ARTLAB_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tiny_weights, tmp_path_factory, kiosk: bool = False):
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import serve

    lab = Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path_factory.mktemp("gallery")), device="cpu",
              models_dir=str(tmp_path_factory.mktemp("models")))
    pictures = tmp_path_factory.mktemp("gallery-pictures")
    for i, colour in enumerate([(200, 30, 30), (30, 160, 60), (40, 40, 200)]):
        lab.add(make_image(pictures / f"{i}.png", colour, size=(90, 70), pattern=i).read_bytes(), title=f"Work {i}")
    port = free_port()
    return serve(AppContext(lab, kiosk=kiosk), "127.0.0.1", port, block=False), f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def app_url(tiny_weights, tmp_path_factory):
    demo, url = start_app(tiny_weights, tmp_path_factory)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


def open_page(browser, url, size, lang="en"):
    """A new visitor: a browser context in `lang` ("zh": a Chinese browser) at `size`."""
    context = browser.new_context(viewport=size, locale="zh-CN" if lang == "zh" else "en-US",
                                  has_touch=size["width"] < 500, is_mobile=size["width"] < 500)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#analyze-button", timeout=30_000)
    page.wait_for_timeout(500)            # the switch follows the browser's language on load
    return page


def analyse(page, picture):
    page.set_input_files("#artwork-input input[type=file]", str(picture))
    page.wait_for_selector("#style-label [data-testid=label-output-value]", timeout=60_000)
    page.wait_for_timeout(300)


def open_tab(page, name: str) -> None:
    """Click a tab, from the "More tabs" menu where the screen is too narrow for all of them."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.is_visible():
        tab.click()
    else:
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text=name).click()


def scroll_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def visible_english(page) -> list[str]:
    """Strings of the English table (or English class names) visible on the page."""
    from artlab.labels import DISPLAY_NAMES
    from artlab.ui.i18n import TEXTS

    body = page.inner_text("body")
    found = []
    for key, text in TEXTS["en"].items():
        if key.startswith("example_") or text == TEXTS["zh"].get(key):
            continue
        for part in re.split(r"[{}*`#\n]|\(|\)", text):
            part = part.strip(" .:;,-–→←")
            if len(part) >= 8 and " " in part and part in body and part not in TEXTS["zh"].get(key, ""):
                found.append(part)
    found += [name for name in DISPLAY_NAMES["en"].values() if len(name) > 4 and re.search(rf"\b{name}\b", body)]
    return found


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    return make_image(tmp_path_factory.mktemp("pics") / "artwork.png", (180, 120, 40), size=(160, 120), pattern=3)


@pytest.fixture(scope="module")
def not_a_picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "notes.jpg"
    path.write_text("this is not an image, just text\n" * 4)
    return path


@pytest.mark.parametrize("size", SIZES)
def test_the_page_fits_the_screen_and_results_come_first_on_a_phone(browser, app_url, picture, size, tmp_path):
    page = open_page(browser, app_url, SIZES[size])
    assert "Gallery" in page.inner_text("body")
    analyse(page, picture)
    top_style = page.inner_text("#style-label [data-testid=label-output-value]").strip()
    assert top_style in {"Art Nouveau", "Baroque", "Expressionism", "Impressionism", "Post-Impressionism",
                         "Romanticism", "Symbolism"}
    page.screenshot(path=str(shots_dir(tmp_path) / f"artwork-{size}-en.png"), full_page=True)
    results, upload = page.locator("#style-label").bounding_box(), page.locator("#artwork-input").bounding_box()
    if size == "phone":
        for width in (360, 390, 430):
            page.set_viewport_size({"width": width, "height": 844})
            page.wait_for_timeout(200)
            assert scroll_width(page) <= width, f"{scroll_width(page)} px wide at {width}"
        assert abs(results["x"] - upload["x"]) < 2 and results["y"] < upload["y"]   # one column, results first
    else:
        assert scroll_width(page) <= SIZES[size]["width"]
        assert results["x"] > upload["x"] + 100 and abs(results["y"] - upload["y"]) < 50   # side by side
    page.context.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_text_file_named_jpg_gets_one_plain_message(browser, app_url, not_a_picture, size, tmp_path):
    page = open_page(browser, app_url, SIZES[size])
    page.set_input_files("#artwork-input input[type=file]", str(not_a_picture))
    message = page.wait_for_selector("#artwork-message", state="visible", timeout=30_000).inner_text()
    page.wait_for_timeout(500)
    assert "not a picture" in message
    body = page.inner_text("body")
    assert not [text for text in FRAMEWORK_TEXT if text in body], body
    assert page.locator(".toast-body, .error").count() == 0        # no toast, no red badge on an output
    page.screenshot(path=str(shots_dir(tmp_path) / f"bad-file-{size}-en.png"), full_page=True)
    page.locator("#analyze-button").click()                     # nothing left to analyse: guidance, calmly
    page.wait_for_function("document.querySelector('#artwork-message').innerText.includes('first')")
    page.context.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_chinese_browser_gets_chinese_and_the_switch_rerenders(browser, app_url, picture, not_a_picture, size,
                                                                  tmp_path):
    page = open_page(browser, app_url, SIZES[size], lang="zh")
    assert page.locator("#lang-switch input[value='中文']").is_checked()
    analyse(page, picture)
    page.wait_for_timeout(500)
    assert "风格" in page.inner_text("body") and visible_english(page) == []
    page.screenshot(path=str(shots_dir(tmp_path) / f"artwork-{size}-zh.png"), full_page=True)
    page.set_input_files("#artwork-input input[type=file]", str(not_a_picture))
    page.wait_for_function("document.querySelector('#artwork-message')?.innerText.includes('图片')")
    assert visible_english(page) == []
    page.screenshot(path=str(shots_dir(tmp_path) / f"bad-file-{size}-zh.png"), full_page=True)
    # English, then back: the results follow the switch without a new analysis.
    analyse(page, picture)
    page.get_by_text("English", exact=True).click()
    page.wait_for_selector("text=Look at this artwork")
    page.wait_for_function("!document.querySelector('#style-label').innerText.match(/[\\u4e00-\\u9fff]/)")
    page.get_by_text("中文", exact=True).click()
    page.wait_for_selector("text=分析这件作品")
    page.wait_for_function("document.querySelector('#style-label [data-testid=label-output-value]')"
                           ".innerText.match(/[\\u4e00-\\u9fff]/)")
    page.wait_for_timeout(300)
    assert visible_english(page) == []
    page.context.close()


def _classes_zip(folder: Path) -> Path:
    archive = folder / "classes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, colour, pattern in (("red", (200, 30, 30), 0), ("blue", (30, 30, 200), 3)):
            for k in range(6):
                z.write(make_image(folder / name / f"{k}.png", colour, pattern=pattern + k % 2), f"{name}/{k}.png")
    return archive


@pytest.mark.parametrize("size", SIZES)
def test_train_for_me_start_over_leaves_the_artwork_tab_working(browser, app_url, picture, size, tmp_path):
    page = open_page(browser, app_url, SIZES[size])
    open_tab(page, "Train")
    page.set_input_files("#train-zip input[type=file]", str(_classes_zip(tmp_path)))
    page.wait_for_selector("#train-notes >> text=Ready to train", timeout=30_000)
    page.locator("#train-button").click()
    page.wait_for_selector("#train-status >> text=Held-out accuracy", timeout=120_000)
    page.wait_for_selector("#train-download", state="visible", timeout=60_000)
    page.screenshot(path=str(shots_dir(tmp_path) / f"train-{size}-en.png"), full_page=True)
    page.locator("#use-for-me").click()
    page.wait_for_selector("#train-model-note >> text=for you only")
    page.locator("#train-start-over").click()
    page.wait_for_selector("#train-notes >> text=usual model again")
    assert page.locator("#train-status").inner_text().strip() == ""          # the last run's results are gone
    assert not page.locator("#train-download").is_visible()
    open_tab(page, "Artwork")
    analyse(page, picture)
    assert not page.locator("#model-label").is_visible()                     # the usual model answered
    assert "could not be loaded" not in page.inner_text("body")
    page.context.close()
