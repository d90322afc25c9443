"""SQL over the shards, and the browser in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from datasets import load_dataset

pytest.importorskip("duckdb", reason="the catalog needs duckdb (pip install 'medtrinity-25m[catalog]')")


def test_query_counts_rows_per_modality(demo_out: Path) -> None:
    result = run_cli("query", demo_out, "SELECT modality, count(*) AS n FROM samples GROUP BY modality",
                     "--output", "json")
    counts = {r["modality"]: r["n"] for r in json.loads(result.stdout)}
    truth = {}
    for row in load_dataset(str(demo_out), "all", split="train"):
        truth[row["modality"]] = truth.get(row["modality"], 0) + 1
    assert counts == truth


def test_field_patterns_are_case_insensitive_regexes(demo_out: Path) -> None:
    result = run_cli("query", demo_out, "--field", "organ=ABDO|skin", "--where", "n_rois > 0", "--output", "json")
    rows = json.loads(result.stdout)
    assert rows and {r["organ"] for r in rows} == {"abdomen", "skin"}
    csv_out = run_cli("query", demo_out, "SELECT id FROM samples WHERE modality = 'fundus'", "--output", "csv")
    assert csv_out.stdout.splitlines()[0] == "id" and len(csv_out.stdout.splitlines()) == 5


def test_bad_sql_is_a_clear_error(demo_out: Path) -> None:
    result = run_cli("query", demo_out, "SELECT nope FROM samples", ok=False)
    assert result.exit_code != 0 and "nope" in result.output


@pytest.fixture()
def server(demo_out: Path):
    from builder.dataset.serve import make_server

    httpd = make_server(demo_out, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on this machine (apt-get install chromium)")


def test_browse_filter_open_toggle_overlay_and_read_attributes(server: str, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.wait_for_selector("#modality option[value=ct]", state="attached")
        page.select_option("#modality", "ct")
        page.click("#search")
        page.wait_for_function("document.querySelector('#count').textContent.startsWith('11 ')")
        cards = page.locator(".result")
        assert cards.count() == 11
        # open a phantom slice: it has a mask and ROI boxes
        page.fill("#q", "lesion")
        page.click("#search")
        page.wait_for_function("document.querySelector('#count').textContent.startsWith('9 ')")
        page.locator(".result").nth(4).click()
        page.wait_for_selector("#attributes tr")
        page.wait_for_function("document.querySelector('#sample-image').naturalWidth > 0")
        assert page.locator("#overlay-layer rect.roi-box").count() >= 1
        assert page.locator("#overlay-layer image").count() == 1
        assert page.is_visible("#overlay-layer")
        page.uncheck("#overlay-toggle")
        assert not page.is_visible("#overlay-layer")
        page.check("#overlay-toggle")
        assert page.is_visible("#overlay-layer")
        attributes = dict(zip(page.locator("#attributes th").all_inner_texts(),
                              page.locator("#attributes td").all_inner_texts()))
        assert set(attributes) == {"modality", "organ_detection", "roi_analysis", "texture", "region_relationship"}
        assert attributes["modality"].startswith("A CT image")
        assert "liver" in attributes["organ_detection"]
        shot = tmp_path / "sample-view.png"
        page.locator("#sample").screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        browser.close()
    print(f"screenshot of the sample view: {shot}")


def test_a_slow_first_search_does_not_overwrite_the_users_search(server: str) -> None:
    """The page's own first search answers after the user's: the user's results stay on the page."""
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    held: list[Any] = []

    def hold_the_first(route: Any) -> None:  # playwright Route
        if held:
            route.continue_()
        else:
            held.append(route)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.route("**/api/search?*", hold_the_first)
        page.goto(server)
        page.wait_for_selector("#modality option[value=ct]", state="attached")
        page.select_option("#modality", "ct")
        page.click("#search")
        page.wait_for_function("document.querySelector('#count').textContent.startsWith('11 ')")
        assert len(held) == 1
        with page.expect_response(lambda r: "/api/search?" in r.url and "modality=ct" not in r.url) as late:
            held[0].continue_()
        assert late.value.ok
        page.wait_for_load_state("networkidle")
        page.evaluate("() => new Promise((done) => setTimeout(done, 200))")
        assert page.locator("#count").inner_text().startswith("11 ")
        assert page.locator(".result").count() == 11
        browser.close()
