"""The app in a real browser: Debian's chromium driven by playwright (never `playwright install`).

Loads the page, generates a pair, waits until both images and the analysis plots render, runs a small
seed grid and evaluation, and saves a screenshot of every tab (to assets/app/screenshots/ when
NPNET_UPDATE_SCREENSHOTS=1, the README's pictures; else to a temporary folder, keeping the tree clean).
"""

import os
import tempfile
from pathlib import Path

import pytest

from studio.config import default_model
from studio.examples import example_prompts

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = (
    Path(__file__).resolve().parents[1] / "assets" / "app" / "screenshots"
    if os.environ.get("NPNET_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "npnet-screenshots"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# the default model's second example (the first is preloaded on page load): on micro-turbo a seed NPNet rescues
PROMPT, SEED = example_prompts(default_model(offline=True, has_gpu=False))[1]
BUSY = "document.querySelectorAll('.eta-bar, .progress-level').length === 0"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def page(offline_app, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    url, _ = offline_app
    workdir = tmp_path_factory.mktemp("browser")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url)
        page.wait_for_selector("#generate-button")
        # the first cached example is preloaded into the outputs (eager caching on the offline default)
        page.wait_for_function("document.querySelector('#pair-summary')?.innerText.includes('seed 0')")
        _idle(page)
        yield page
        context.close()


def _idle(page) -> None:
    page.wait_for_function(BUSY)


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.wait_for_timeout(500)  # let plotly finish its transitions
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _rendered_images(page, selector: str) -> int:
    return page.evaluate(
        f"[...document.querySelectorAll('{selector} img')].filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_generate_shows_both_images_and_the_analysis(page):
    page.get_by_label("Prompt", exact=True).fill(PROMPT)
    page.locator("#seed-input input").fill(str(SEED))
    page.click("#generate-button")
    page.wait_for_function(f"document.querySelector('#pair-summary')?.innerText.includes('seed {SEED}')")
    _idle(page)
    page.wait_for_function(
        "[...document.querySelectorAll('#pair-gallery img')].filter(i => i.naturalWidth > 0).length >= 2"
    )
    assert _rendered_images(page, "#pair-gallery") >= 2
    captions = page.locator("#pair-gallery").inner_text()
    assert "Standard" in captions and "NPNet" in captions
    assert page.locator("#pair-scores table").count() >= 1
    _shot(page, "generate")
    _open_tab(page, "Noise analysis")
    page.wait_for_function(f"document.querySelector('#analysis-header')?.innerText.includes('seed {SEED}')")
    for plot in ("similarity", "spectrum", "histogram", "residuals"):
        page.wait_for_selector(f"#plot-{plot} .js-plotly-plot .main-svg")
    traces = page.evaluate(
        "document.querySelectorAll('#plot-similarity .js-plotly-plot .scatterlayer .trace').length"
    )
    assert traces >= 2
    _shot(page, "analysis")


def test_seed_grid_and_opening_a_row(page):
    _open_tab(page, "Seeds")
    page.locator("#seeds-tab-prompt textarea").fill("three green squares")
    page.locator("#seeds-count input[type=number]").fill("3")
    page.click("#seeds-button")
    page.wait_for_function("document.querySelector('#seeds-summary')?.innerText.includes('win rate')")
    _idle(page)
    page.wait_for_function(
        "[...document.querySelectorAll('#seeds-gallery img')].filter(i => i.naturalWidth > 0).length >= 6"
    )
    _shot(page, "seeds")
    page.locator('#seeds-table [data-testid="cell-1-0"]').click()
    page.wait_for_function("document.querySelector('#pair-summary')?.innerText.includes('seed 1 ')")
    _idle(page)
    assert _rendered_images(page, "#pair-gallery") >= 2


def test_evaluate_tab_runs_and_charts(page):
    _open_tab(page, "Evaluate")
    page.get_by_text("Custom run").click()
    page.locator("#eval-prompts-text textarea").fill("a red circle\nthree green squares")
    page.locator("#eval-limit input[type=number]").fill("2")
    page.click("#eval-run-custom")
    page.wait_for_function("document.querySelector('#eval-status')?.innerText.includes('Done')")
    _idle(page)
    page.wait_for_selector("#eval-chart .js-plotly-plot .main-svg")
    _shot(page, "evaluate")


def test_train_and_about_tabs_render(page):
    _open_tab(page, "Train")
    page.wait_for_selector("#train-button")
    _shot(page, "train")
    _open_tab(page, "About")
    page.get_by_text("Headline numbers from the paper").wait_for()
    _shot(page, "about")
