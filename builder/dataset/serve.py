"""``medtri-build serve``: a local web page to explore a built dataset.

Queries go through the catalog (DuckDB, the ``samples`` table held in memory);
images are read from their shard's row group on demand, and thumbnails and
mask overlays are made on demand and cached. Binds to 127.0.0.1 by default.

Routes: ``/`` (the page), ``/api/facets``, ``/api/search``, ``/api/sample/<id>``,
``/api/case/<case_id>`` (the report, its published document and its images), ``/api/export.json?<search>``
(every row of a search), ``/api/export.zip?<search>&modality=ct|mri|all`` (their images),
``/image/<id>.png``, ``/thumb/<id>.png``, ``/overlay/<id>.png``; ``?download=1`` on a sample or a case
saves it as a JSON file.
"""

from __future__ import annotations

import io
import json
import re
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from threading import Lock
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

from builder.dataset.catalog import Catalog, CatalogError

PAGE_SIZE = 24
EXPORT_LIMIT = 100_000  # rows one export of a search holds
THUMB = 160
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], np.uint8)
FILTERS = ("modality", "organ", "disease", "location", "split", "source")
DETAIL = ("id, split, modality, organ, disease, location, case_id, plane, slice_index, width, height, source, "
          "source_file, subset, license, coarse_caption, caption, attributes, rois, reference, details, knowledge, "
          "has_mask")
_ID = re.compile(r"^/(image|thumb|overlay)/([A-Za-z0-9_-]+)\.png$")


class Browser:
    """What the handler serves: one catalog, its images, cached thumbnails."""

    def __init__(self, out: Path) -> None:
        self.catalog = Catalog(out, materialize=True)
        self.lock = Lock()  # one DuckDB connection: one query at a time
        self.thumb = lru_cache(maxsize=4096)(self._thumb)
        self.overlay = lru_cache(maxsize=512)(self._overlay)

    def facets(self) -> dict[str, list[list[Any]]]:
        with self.lock:
            return {name: [list(r) for r in self.catalog.sql(
                f"SELECT {name}, count(*) FROM samples WHERE {name} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC "
                "LIMIT 200").rows] for name in ("modality", "location", "split", "source")}

    def _patterns(self, query: dict[str, str]) -> dict[str, str]:
        patterns = {name: query.get(name, "") for name in FILTERS}
        if patterns["modality"]:
            patterns["modality"] = f"^{re.escape(patterns['modality'])}$"
        return patterns

    def matching(self, query: dict[str, str], columns: str = DETAIL) -> list[dict[str, Any]]:
        """Every row of a search (the page's filters), at most :data:`EXPORT_LIMIT`."""
        with self.lock:
            _, result = self.catalog.search(self._patterns(query), text=query.get("q") or None,
                                            limit=EXPORT_LIMIT, columns=columns)
        return result.records()

    def export_zip(self, query: dict[str, str], modality: str) -> bytes:
        """The images of a search as a zip (``modality``: ct, mri or all), named by row id."""
        import zipfile

        wanted = {"ct": {"ct"}, "mri": {"mri"}, "mr": {"mri"}}.get(modality)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for row in self.matching(query, "id, modality"):
                if wanted is None or row["modality"] in wanted:
                    data = self.image(row["id"])
                    if data is not None:
                        archive.writestr(f"{row['modality']}/{row['id']}.png", data)
        return buffer.getvalue()

    def case(self, case_id: str) -> dict[str, Any] | None:
        """One clinical case: its report (the ``cases`` table), its published document, its images."""
        with self.lock:
            tables = {r[0] for r in self.catalog.sql("SHOW TABLES").rows}
            report = self.catalog.sql("SELECT * FROM cases WHERE case_id = ?", [case_id]).records() \
                if "cases" in tables else []
            images = self.catalog.sql("SELECT id, modality, plane, coarse_caption, record FROM samples "
                                      "WHERE case_id = ? ORDER BY id", [case_id]).records()
        if not images:
            return None
        document = next((json.loads(r["record"]).get("case") for r in images if r.get("record")), None)
        return {"case_id": case_id, "report": report[0] if report else {}, "document": document,
                "images": [{k: v for k, v in r.items() if k != "record"} for r in images]}

    def search(self, query: dict[str, str]) -> dict[str, Any]:
        page = max(0, int(query.get("page", "0") or 0))
        patterns = self._patterns(query)
        with self.lock:
            total, result = self.catalog.search(
                patterns, text=query.get("q") or None, limit=PAGE_SIZE, offset=page * PAGE_SIZE,
                columns="id, modality, organ, disease, location, coarse_caption, n_rois")
        return {"total": total, "page": page, "page_size": PAGE_SIZE, "rows": result.records()}

    def sample(self, row_id: str) -> dict[str, Any] | None:
        with self.lock:
            rows = self.catalog.sql(f"SELECT {DETAIL} FROM samples WHERE id = ?", [row_id]).records()
        return rows[0] if rows else None

    def image(self, row_id: str, column: str = "image") -> bytes | None:
        with self.lock:
            return self.catalog.image(row_id, column)

    def _thumb(self, row_id: str) -> bytes | None:
        data = self.image(row_id)
        if data is None:
            return None
        opened = Image.open(io.BytesIO(data))
        img = opened.convert("RGB") if opened.mode not in ("L", "RGB") else opened
        img.thumbnail((THUMB, THUMB))
        return _png(img)

    def _overlay(self, row_id: str) -> bytes | None:
        """The mask as colours over transparency: label i in the colour of ROI i."""
        data = self.image(row_id, "mask")
        if data is None:
            return None
        labels = np.asarray(Image.open(io.BytesIO(data))).astype(np.int64)
        rgba = np.zeros(labels.shape + (4,), np.uint8)
        inside = labels > 0
        rgba[inside, :3] = PALETTE[(labels[inside] - 1) % len(PALETTE)]
        rgba[inside, 3] = 110
        return _png(Image.fromarray(rgba, "RGBA"))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def page_html() -> bytes:
    return resources.files("builder").joinpath("templates", "browser.html").read_bytes()


LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """A request's Host names this server (DNS rebinding: a page of another site names its own host)."""
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in allowed


def handler(browser: Browser, bound: str = "127.0.0.1") -> type[BaseHTTPRequestHandler]:
    allowed = LOCAL_NAMES | {bound.lower(), f"[{bound.lower()}]"}

    class Handler(BaseHTTPRequestHandler):
        server_version = "medtri-browser"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per error only
            if args and str(args[1]).startswith(("4", "5")):
                super().log_message(format, *args)

        def _send(self, status: int, body: bytes, kind: str, cache: bool = False, filename: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            if filename:
                self.send_header("Content-Disposition", f'attachment; filename="{filename}"')
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any, status: int = 200, filename: str = "") -> None:
            body = json.dumps(value, default=str, ensure_ascii=False, indent=1 if filename else None).encode()
            self._send(status, body, "application/json", filename=filename)

        def do_GET(self) -> None:
            if not host_allowed(self.headers.get("Host"), allowed):
                return self._json({"error": "unknown Host: this server answers its own names only"},
                                  HTTPStatus.MISDIRECTED_REQUEST)
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                self._route(url.path, query)
            except (CatalogError, ValueError) as exc:
                self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)

        def _route(self, path: str, query: dict[str, str]) -> None:
            if path == "/":
                return self._send(200, page_html(), "text/html; charset=utf-8")
            if path == "/api/facets":
                return self._json(browser.facets())
            if path == "/api/search":
                return self._json(browser.search(query))
            if path.startswith("/api/sample/"):
                row_id = path.rsplit("/", 1)[1]
                sample = browser.sample(row_id)
                name = f"{row_id}.json" if query.get("download") else ""
                return self._json(sample, filename=name) if sample else self._json({"error": "no such id"}, 404)
            if path.startswith("/api/case/"):
                case_id = path.rsplit("/", 1)[1]
                case = browser.case(case_id)
                name = f"{case_id}.json" if query.get("download") else ""
                return self._json(case, filename=name) if case else self._json({"error": "no such case"}, 404)
            if path == "/api/export.json":
                return self._json(browser.matching(query), filename="search.json")
            if path == "/api/export.zip":
                modality = query.get("modality", "all")
                archive = browser.export_zip(query, modality)
                return self._send(200, archive, "application/zip", filename=f"images-{modality}.zip")
            match = _ID.match(path)
            if match:
                kind, row_id = match.groups()
                makers: dict[str, Callable[[str], bytes | None]] = {
                    "image": browser.image, "thumb": browser.thumb, "overlay": browser.overlay}
                maker = makers[kind]
                png = maker(row_id)
                if png is not None:
                    return self._send(200, png, "image/png", cache=True)
            self._json({"error": "not found"}, 404)

    return Handler


def make_server(out: Path, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0: a free one); call ``serve_forever``."""
    server = ThreadingHTTPServer((host, port), handler(Browser(out), host))
    server.daemon_threads = True
    return server
