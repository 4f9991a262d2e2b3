"""A real browser: Debian's Chromium, headless, driven by Playwright for Python.

Opens the app, uploads an artwork, waits for the style labels, and saves a screenshot
under the pytest tmp dir. Skipped only when /usr/bin/chromium is absent (CI installs it:
`apt-get install -y chromium`); Playwright's own browser download is never used.
"""

import socket
from pathlib import Path

import pytest
from conftest import make_image

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian's Chromium is not installed (apt-get install -y chromium)")]


@pytest.fixture(scope="module")
def app_url(tiny_weights, tmp_path_factory):
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = AppContext(Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path_factory.mktemp("gallery")), device="cpu"))
    demo = serve(ctx, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_upload_shows_labels_and_screenshot(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    picture = make_image(tmp_path / "artwork.png", (180, 120, 40), size=(160, 120), pattern=3)
    shot = tmp_path / "artwork-tab.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1400})
            page.goto(app_url)
            page.wait_for_selector("#analyze-button", timeout=30_000)
            assert "Gallery" in page.inner_text("body")
            page.set_input_files("#artwork-input input[type=file]", str(picture))
            page.wait_for_selector("#style-label [data-testid=label-output-value]", timeout=60_000)
            top_style = page.inner_text("#style-label [data-testid=label-output-value]").strip()
            assert top_style in {"Art Nouveau", "Baroque", "Expressionism", "Impressionism", "Post-Impressionism",
                                 "Romanticism", "Symbolism"}
            page.screenshot(path=str(shot), full_page=True)
            page.get_by_text("中文", exact=True).click()           # the language switch re-labels the page
            page.wait_for_selector("text=分析这件作品", timeout=15_000)
            assert "画廊" in page.inner_text("body")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
