"""JSON over HTTP/1.1 keep-alive to one server, with the standard library's ``http.client``.

At dataset scale the client's own CPU matters: a model server answers
hundreds of calls a second, and the build's main process makes them all.
One keep-alive connection per thread and one ``json.dumps`` per call cost about
0.75 ms of CPU a call here, against 4.5 ms for the ``openai`` SDK (httpx and
its typed models) on the same server (BENCHMARKS.md), which is also why vLLM's
own serving benchmark posts with a bare HTTP client. HTTPS verifies
certificates with the system's defaults; ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
``NO_PROXY`` are honoured as ``urllib`` reads them.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["JSONPost", "Reply"]

# a kept-alive connection the server has closed fails this way before the request reaches it
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: Any  # the parsed JSON, or None when the body is not JSON


class JSONPost:
    """``post(path, body)``: the reply of ``base_url + path``; ``OSError`` or ``HTTPException`` if none came."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        self.https, self.host = parts.scheme == "https", parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.base = parts.path.rstrip("/")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self.timeout = timeout
        proxy = _proxy(parts.scheme, self.host)
        self.proxy = (proxy.hostname or "", proxy.port or 80) if proxy else None
        self._local = threading.local()
        self._context = ssl.create_default_context() if self.https else None

    def _open(self) -> http.client.HTTPConnection:
        host, port = self.proxy or (self.host, self.port)
        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                                          context=self._context)
            if self.proxy:
                conn.set_tunnel(self.host, self.port)
            return conn
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def _target(self, path: str) -> str:
        if self.proxy and not self.https:  # a plain-HTTP proxy takes the absolute URL
            return f"http://{self.host}:{self.port}{self.base}{path}"
        return self.base + path

    def post(self, path: str, body: Any) -> Reply:
        data = json.dumps(body).encode()
        reused = getattr(self._local, "conn", None) is not None
        try:
            return self._post(path, data)
        except _STALE:
            if not reused:
                raise
        # the server had closed the kept-alive connection: the request never arrived, so once more on a fresh one
        return self._post(path, data)

    def _post(self, path: str, data: bytes) -> Reply:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        try:
            conn.request("POST", self._target(path), data, self.headers)  # headers and body in one send
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)

    def close(self) -> None:
        """Close this thread's connection (the next post opens another)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


def _proxy(scheme: str, host: str) -> Any:
    """The proxy ``urllib`` would use for ``scheme://host`` (from the environment), or None."""
    if host in ("127.0.0.1", "localhost", "::1") or urllib.request.proxy_bypass(host):
        return None
    url = urllib.request.getproxies().get(scheme)
    return urlsplit(url if "://" in url else f"http://{url}") if url else None
