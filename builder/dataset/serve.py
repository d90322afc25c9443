"""``medtri-build serve``: a local web page to explore a built dataset.

Queries go through the catalog (DuckDB, the ``samples`` table held in memory);
images are read from their shard's row group on demand, and thumbnails and
mask overlays are made on demand and cached. Binds to 127.0.0.1 by default.

Routes: ``/`` (the page), ``/api/facets``, ``/api/search``, ``/api/sample/<id>``,
``/image/<id>.png``, ``/thumb/<id>.png``, ``/overlay/<id>.png``.
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
THUMB = 160
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], np.uint8)
FILTERS = ("modality", "organ", "disease", "location", "split", "source")
DETAIL = ("id, split, modality, organ, disease, location, case_id, plane, slice_index, width, height, source, "
          "source_file, license, coarse_caption, caption, attributes, rois, reference, details, knowledge, "
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

    def search(self, query: dict[str, str]) -> dict[str, Any]:
        page = max(0, int(query.get("page", "0") or 0))
        patterns = {name: query.get(name, "") for name in FILTERS}
        if patterns["modality"]:
            patterns["modality"] = f"^{re.escape(patterns['modality'])}$"
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

        def _send(self, status: int, body: bytes, kind: str, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any, status: int = 200) -> None:
            self._send(status, json.dumps(value, default=str).encode(), "application/json")

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
                sample = browser.sample(path.rsplit("/", 1)[1])
                return self._json(sample) if sample else self._json({"error": "no such id"}, 404)
            match = _ID.match(path)
            if match:
                kind, row_id = match.groups()
                makers: dict[str, Callable[[str], bytes | None]] = {
                    "image": browser.image, "thumb": browser.thumb, "overlay": browser.overlay}
                maker = makers[kind]
                body = maker(row_id)
                if body is not None:
                    return self._send(200, body, "image/png", cache=True)
            self._json({"error": "not found"}, 404)

    return Handler


def make_server(out: Path, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0: a free one); call ``serve_forever``."""
    server = ThreadingHTTPServer((host, port), handler(Browser(out), host))
    server.daemon_threads = True
    return server
