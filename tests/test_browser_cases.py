"""The browser's case view and exports, clicked in headless Chromium on a MedPix 2.0 build."""

from __future__ import annotations

import io
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import MEDPIX, build, need, shard_rows, write_manifest

pytest.importorskip("duckdb", reason="the browser needs the catalog extra")


@pytest.fixture(scope="module")
def medpix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    test = need(MEDPIX / "test")
    folder = tmp_path_factory.mktemp("browser-medpix")
    out = folder / "out"
    build(write_manifest(folder, {"name": "medpix", "format": "medpix", "root": str(test)}), out)
    return out


@pytest.fixture()
def server(medpix: Path):
    from builder.dataset.serve import make_server

    httpd = make_server(medpix, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return str(shutil.which(name))
    pytest.skip("no chromium on this machine (apt-get install chromium)")


def test_a_user_exports_a_search_and_opens_a_case(server: str, medpix: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    rows = shard_rows(medpix)
    head = [r for r in rows if r["location"] == "Head"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(server)
        page.fill("#location", "^Head$")
        page.click("#search")
        page.wait_for_function(f"document.querySelector('#count').textContent.startsWith('{len(head)} ')")
        with page.expect_download() as download:
            page.click("#export-json")
        exported = json.loads(Path(download.value.path()).read_text())
        assert sorted(r["id"] for r in exported) == sorted(r["id"] for r in head)
        with page.expect_download() as download:
            page.click("#export-ct")
        names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
        assert sorted(names) == sorted(f"ct/{r['id']}.png" for r in head if r["modality"] == "ct")
        page.locator(".result").first.click()
        page.wait_for_selector("#attributes tr")
        shown = page.locator(".result").first.get_attribute("data-id")
        case_id = next(r["case_id"] for r in rows if r["id"] == shown)
        page.click("#open-case")
        page.wait_for_selector("#case-images img")
        case_images = [r["id"] for r in rows if r["case_id"] == case_id]
        assert page.locator("#case-images img").count() == len(case_images)
        original = next(json.loads(line) for line in (MEDPIX / "test" / "data_test.jsonl").read_text().splitlines()
                        if line.strip() and json.loads(line)["U_id"] == case_id)
        assert original["Case"]["Title"] in page.locator("#case-title").inner_text()
        with page.expect_download() as download:
            page.click("#save-case")
        saved = json.loads(Path(download.value.path()).read_text())
        assert saved["document"] == original and sorted(i["id"] for i in saved["images"]) == sorted(case_images)
        with page.expect_download() as download:
            page.click("#save-sample")
        assert json.loads(Path(download.value.path()).read_text())["id"] == shown
        page.screenshot(path=str(tmp_path / "case-view.png"))
        browser.close()
