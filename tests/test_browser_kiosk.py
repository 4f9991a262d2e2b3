"""The kiosk in a real browser (Chromium via Playwright, as tests/test_browser.py), portrait
1080 x 1920 and landscape 1920 x 1080: pictures offer fullscreen only (no download, no share,
no "download all"), the language switch and the checkbox are real touch controls (round and
square, not stretched), each orientation is laid out for its screen, nothing is remembered in the
browser (no run history, empty storage), a text file named .jpg gets one plain sentence, and the
switch to 中文 after an analysis leaves no string of the English table on the screen.
"""

import pytest
from test_browser import (  # noqa: F401 - module fixtures, shared
    CHROMIUM,
    FRAMEWORK_TEXT,
    analyse,
    browser,
    not_a_picture,
    open_page,
    picture,
    scroll_width,
    shots_dir,
    start_app,
    visible_english,
)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian's Chromium is not installed (apt-get install -y chromium)")]
PORTRAIT, LANDSCAPE = {"width": 1080, "height": 1920}, {"width": 1920, "height": 1080}
SIZES = {"portrait": PORTRAIT, "landscape": LANDSCAPE}
OFFERS = ("download", "share", "下载", "分享")


@pytest.fixture(scope="module")
def kiosk_url(tiny_weights, tmp_path_factory):
    demo, url = start_app(tiny_weights, tmp_path_factory, kiosk=True)
    yield url
    demo.close()


def control_labels(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('button, a')].map(b => "
                         "((b.getAttribute('aria-label') || '') + ' ' + (b.title || '') + ' ' + b.innerText)"
                         ".toLowerCase())")


@pytest.mark.parametrize("size", SIZES)
def test_the_kiosk_offers_fullscreen_only_and_forgets(browser, kiosk_url, picture, size, tmp_path):  # noqa: F811
    page = open_page(browser, kiosk_url, SIZES[size])
    analyse(page, picture)
    page.wait_for_selector("#similar-works img")
    page.screenshot(path=str(shots_dir(tmp_path) / f"kiosk-{size}-en.png"))
    labels = control_labels(page)
    assert not [label for label in labels if any(word in label for word in OFFERS)], labels
    assert any("fullscreen" in label for label in labels)
    assert "Train" not in page.inner_text("body")
    assert page.evaluate("window.gradio_config.run_history") is False
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert scroll_width(page) <= SIZES[size]["width"]
    # Real touch controls: the radio buttons and the checkbox are as wide as they are tall, and large.
    for box in page.locator("#lang-switch input, #gradcam-toggle input").all():
        rect = box.bounding_box()
        assert abs(rect["width"] - rect["height"]) <= 2 and rect["width"] >= 24, rect
    heat, similar = page.locator("#heatmap").bounding_box(), page.locator("#similar-works").bounding_box()
    if size == "landscape":      # the picture, its labels and the heat map in the first screen
        assert heat["y"] + heat["height"] <= LANDSCAPE["height"]
        assert heat["x"] > page.locator("#style-label").bounding_box()["x"]
    else:                        # the pictures fill the height instead of leaving a third empty
        assert similar["y"] + similar["height"] >= 0.8 * PORTRAIT["height"]
    page.context.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_kiosk_in_chinese_and_with_a_bad_file(browser, kiosk_url, picture, not_a_picture, size,  # noqa: F811
                                                  tmp_path):
    page = open_page(browser, kiosk_url, SIZES[size])
    analyse(page, picture)
    page.get_by_text("中文", exact=True).click()
    page.wait_for_selector("text=分析这件作品")
    page.wait_for_function("document.querySelector('#style-label [data-testid=label-output-value]')"
                           ".innerText.match(/[\\u4e00-\\u9fff]/)")
    page.wait_for_timeout(300)
    assert visible_english(page) == []
    page.screenshot(path=str(shots_dir(tmp_path) / f"kiosk-{size}-zh.png"))
    page.set_input_files("#artwork-input input[type=file]", str(not_a_picture))
    page.wait_for_function("document.querySelector('#artwork-message')?.innerText.includes('图片')")
    body = page.inner_text("body")
    assert not [text for text in FRAMEWORK_TEXT if text in body] and visible_english(page) == []
    page.screenshot(path=str(shots_dir(tmp_path) / f"kiosk-{size}-bad-file-zh.png"))
    page.context.close()
