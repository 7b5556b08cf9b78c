"""The generated site in a real headless Chromium: sorting, the scatter and its frontier, inert injected scripts.

Screenshots are kept in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ARTIFACTS

from bench.report.collect import collect
from bench.report.site import write_site

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; `.ci/run` installs it (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(two_results: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_site(collect(list(two_results)), tmp_path_factory.mktemp("site") / "site").parent


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors


def test_table_sorts_on_click_and_filters(browser, site: Path) -> None:
    page, requests, errors = _open(browser, site / "index.html")
    assert not errors
    column = "#leaderboard tbody tr:not([hidden]) td:nth-child(9)"  # score [95% CI]
    header = page.locator("#leaderboard thead th").nth(8)
    header.locator("button").click()
    ascending = [float(v) for v in page.eval_on_selector_all(column, "cells => cells.map(c => c.dataset.value)") if v != ""]
    assert ascending == sorted(ascending) and header.get_attribute("aria-sort") == "ascending"
    header.locator("button").click()
    descending = [float(v) for v in page.eval_on_selector_all(column, "cells => cells.map(c => c.dataset.value)") if v != ""]
    assert descending == sorted(ascending, reverse=True) and ascending[0] != ascending[-1]
    page.select_option("select[name=language]", "ha")
    languages = page.eval_on_selector_all("#leaderboard tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.language)")
    assert languages and set(languages) == {"ha"}
    page.select_option("select[name=language]", "")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)
    assert all(url.startswith("file://") for url in requests)


def test_scatter_renders_with_its_frontier(browser, site: Path) -> None:
    page, _, _ = _open(browser, site / "index.html")
    assert page.locator("#scatter-plot circle.point").count() == 2
    frontier = page.locator("#scatter-plot polyline.frontier")
    assert frontier.count() == 1 and frontier.bounding_box()["width"] > 0
    box = page.locator("#scatter-plot").bounding_box()
    assert box["width"] > 300 and box["height"] > 150
    page.locator("#scatter").scroll_into_view_if_needed()
    page.locator("#scatter-plot").screenshot(path=str(ARTIFACTS / "scatter.png"))


def test_an_injected_script_in_a_model_output_stays_inert(browser, site: Path) -> None:
    model_page = next((site / "models").glob("*.html"))
    page, requests, _errors = _open(browser, model_page)
    assert page.evaluate("window.__xss") is None
    outputs = page.locator(".output").all_text_contents()
    assert any("<script>window.__xss = 1</script>" in text for text in outputs)
    assert page.locator(".output img, .output script").count() == 0
    assert all(url.startswith("file://") for url in requests)  # the probe's <img src="x"> was never requested
    page.screenshot(path=str(ARTIFACTS / "model-page.png"), full_page=True)
