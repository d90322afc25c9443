"""A local Hugging Face Hub for the tests: 127.0.0.1, a free port, repos on disk.

It answers what the real ``huggingface_hub`` and ``datasets`` clients call:

- write: ``POST /api/repos/create``, ``POST /api/{type}s/{repo}/preupload/{rev}`` (every file
  ``regular``, with the git ``oid`` of the content already there so the client skips it; the
  Hub takes large and binary files through Xet storage, a separate CAS service that this fixture
  does not run),
  ``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON), ``POST /api/validate-yaml``,
  ``PUT /api/{type}s/{repo}/settings``;
- read: ``GET /api/{type}s/{repo}[/revision/{rev}]``, ``GET .../tree/{rev}[/{path}]``,
  ``POST .../paths-info/{rev}``, ``GET|HEAD /{type}s/{repo}/resolve/{rev}/{path}`` (with ranges).

A stored file is described as the Hub describes it: a file the Hub's default ``.gitattributes``
tracks with LFS (:data:`LFS_SUFFIXES`, or over 10 MB) has the git ``oid`` of its LFS pointer and
an ``lfs`` entry with the content's sha256, which is also its ``ETag``; a small text file has the
git ``oid`` of its content.

It is a test fixture, not a product feature. ``fail_commits_after`` makes every
commit after the first N fail, to interrupt a push; ``hold_commits_after`` holds
the commit after the first N unread (``held`` is set) until ``release``, then
refuses it: the client can be killed in the middle of its push. ``requests``
logs what came, ``committed_paths`` the files of each commit that landed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}


# what a new dataset repo's .gitattributes sends to LFS (the binary formats a build writes), and any file over 10 MB
LFS_SUFFIXES = (".parquet", ".tar", ".arrow", ".npy", ".npz", ".png", ".jpg", ".jpeg", ".webp", ".gz", ".zst",
                ".zip", ".bin", ".pt", ".safetensors")
LFS_MIN_BYTES = 10 * 2**20


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_tracked(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size > LFS_MIN_BYTES


def lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


class Repo:
    def __init__(self, root: Path, repo_id: str, private: bool) -> None:
        self.root, self.repo_id, self.private = root, repo_id, private
        self.files = root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.commits: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}
        self.discussions: list[dict[str, Any]] = []

    def tree(self, revision: str) -> Path:
        """The files of a branch: ``main`` in ``files/``, a pull request's ref beside it."""
        if revision in ("main", ""):
            return self.files
        return self.root / "refs" / re.sub(r"[^A-Za-z0-9]+", "-", revision)

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40

    def listing(self) -> list[Path]:
        return sorted(p for p in self.files.rglob("*") if p.is_file())

    def entry(self, path: Path) -> dict[str, Any]:
        """A file as the tree and paths-info APIs list it: an LFS file by its pointer and its sha256."""
        data, name = path.read_bytes(), path.relative_to(self.files).as_posix()
        if not lfs_tracked(name, len(data)):
            return {"type": "file", "path": name, "oid": git_oid(data), "size": len(data)}
        pointer = lfs_pointer(data)
        return {"type": "file", "path": name, "oid": git_oid(pointer), "size": len(data),
                "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}}


class HubServer:
    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token = root, token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.committed_paths: list[list[str]] = []  # paths of each accepted commit
        self.fail_commits_after: int | None = None
        self.hold_commits_after: int | None = None
        self.held, self.release = threading.Event(), threading.Event()
        self.tokens_seen: set[str] = set()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def repo(self, kind: str, repo_id: str) -> Repo | None:
        return self.repos.get(f"{kind}/{repo_id}")

    # ------------------------------------------------------------------ handlers

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, body: bytes = b"", kind: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(value).encode(), headers=headers)

            def _error(self, status: int, message: str) -> None:
                self._json({"error": message}, status, {"X-Error-Message": message})

            def _dispatch(self) -> None:
                url = urlparse(self.path)
                path, query = unquote(url.path), {k: v[0] for k, v in parse_qs(url.query).items()}
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Bearer "):
                    hub.tokens_seen.add(auth[7:])
                with hub.lock:
                    hub.requests.append((self.command, path))
                try:
                    hub.route(self, path, query)
                except FileNotFoundError as exc:
                    self._error(404, str(exc))

            do_GET = do_POST = do_PUT = do_HEAD = _dispatch  # noqa: N815 (http.server's names)

        return Handler

    def route(self, h: Any, path: str, query: dict[str, str]) -> None:
        if path == "/api/repos/create" and h.command == "POST":
            return self._create(h)
        if path == "/api/validate-yaml":
            h._body()
            return h._json({"errors": [], "warnings": []})
        if path == "/api/whoami-v2":
            return h._json({"type": "user", "name": "tester", "auth": {"accessToken": {"role": "write"}}})
        match = re.match(r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)(?:/(.*))?$", path)
        if match:
            kind, repo_id, rest = match.group(1), match.group(2), match.group(3) or ""
            repo = self.repo(kind, repo_id)
            if repo is None:
                h._body()
                return h._json({"error": "Repository not found"}, 404,
                                {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            return self._api(h, repo, rest, query)
        match = re.match(r"^/(datasets|spaces)/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if match:
            repo = self.repo(match.group(1), match.group(2))
            return self._resolve(h, repo, match.group(4))
        h._error(404, f"no route for {h.command} {path}")

    def _create(self, h: Any) -> None:
        body = json.loads(h._body() or b"{}")
        kind = {"dataset": "datasets", "model": "models", "space": "spaces"}[body.get("type") or "model"]
        repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
        key = f"{kind}/{repo_id}"
        if key in self.repos:
            return h._json({"error": "You already created this dataset repo", "url": f"{self.url}/{kind}/{repo_id}"},
                           409)
        private = bool(body.get("private")) or body.get("visibility") == "private"
        self.repos[key] = Repo(self.root / kind / repo_id, repo_id, private)
        h._json({"url": f"{self.url}/{kind}/{repo_id}", "name": repo_id, "id": repo_id})

    def _api(self, h: Any, repo: Repo, rest: str, query: dict[str, str]) -> None:
        if rest.startswith("preupload/"):
            files = json.loads(h._body())["files"]
            existing = {p.relative_to(repo.files).as_posix(): git_oid(p.read_bytes()) for p in repo.listing()}
            return h._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                       "oid": existing.get(f["path"])} for f in files]})
        if rest.startswith("commit/"):
            return self._commit(h, repo, unquote(rest.split("/", 1)[1]))
        if rest == "discussions" and h.command == "POST":
            body = json.loads(h._body())
            repo.discussions.append(body)
            return h._json({"num": len(repo.discussions)})
        if rest.startswith("discussions/"):
            num = int(rest.split("/")[1])
            body = repo.discussions[num - 1]
            return h._json({"num": num, "title": body["title"], "status": "draft", "isPullRequest": True,
                            "createdAt": "2026-01-01T00:00:00.000Z", "author": {"name": "tester"},
                            "repo": {"name": repo.repo_id, "type": "dataset"}, "events": [],
                            "changes": {"base": "refs/heads/main"}, "filesWithConflicts": []})
        if rest == "settings":
            repo.settings.update(json.loads(h._body() or b"{}"))
            return h._json({})
        if rest.startswith("paths-info/"):
            body = h._body()
            wanted = json.loads(body)["paths"] if body.startswith(b"{") else parse_qs(body.decode()).get("paths", [])
            return h._json([self._info(repo, p) for p in wanted if (repo.files / p).exists()])
        if rest.startswith("tree/"):
            parts = rest.split("/", 2)
            sub = parts[2] if len(parts) > 2 else ""
            return h._json(self._tree(repo, sub, query.get("recursive") in ("1", "true", "True")))
        if rest == "" or rest.startswith("revision/"):
            return h._json(self._repo_info(repo))
        h._error(404, f"no api route {rest}")

    def _repo_info(self, repo: Repo) -> dict[str, Any]:
        return {"id": repo.repo_id, "_id": repo.repo_id, "sha": repo.sha, "private": repo.private,
                "gated": repo.settings.get("gated", False), "disabled": False, "downloads": 0, "likes": 0,
                "tags": [], "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "siblings": [{"rfilename": e["path"]} for e in map(repo.entry, repo.listing())]}

    def _info(self, repo: Repo, path: str) -> dict[str, Any]:
        full = repo.files / path
        return repo.entry(full) if full.is_file() else {"type": "directory", "path": path, "oid": "0" * 40,
                                                        "size": 0}

    def _tree(self, repo: Repo, sub: str, recursive: bool) -> list[dict[str, Any]]:
        base = repo.files / sub
        if not base.exists():
            raise FileNotFoundError(sub)
        children = base.rglob("*") if recursive else base.iterdir()
        return [self._info(repo, c.relative_to(repo.files).as_posix()) for c in sorted(children)]

    def _commit(self, h: Any, repo: Repo, revision: str) -> None:
        if self.hold_commits_after is not None and len(self.committed_paths) >= self.hold_commits_after:
            self.held.set()
            self.release.wait(120)
            h.close_connection = True
            return h._error(503, "commit held by the test server, then refused")
        lines = [json.loads(line) for line in h._body().splitlines() if line.strip()]
        with self.lock:
            if self.fail_commits_after is not None and len(self.committed_paths) >= self.fail_commits_after:
                return h._error(422, "commit refused by the test server (simulated failure)")
            paths = []
            for line in lines:
                if line["key"] == "file":
                    value = line["value"]
                    target = repo.tree(revision) / value["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(base64.b64decode(value["content"]))
                    paths.append(value["path"])
                elif line["key"] == "deletedFile":
                    (repo.tree(revision) / line["value"]["path"]).unlink(missing_ok=True)
                elif line["key"] == "deletedFolder":
                    shutil.rmtree(repo.tree(revision) / line["value"]["path"], ignore_errors=True)
            oid = hashlib.sha1(f"{repo.sha}{time.time()}{paths}".encode()).hexdigest()
            repo.commits.append({"oid": oid, "message": lines[0]["value"].get("summary", ""), "paths": paths})
            self.committed_paths.append(paths)
        h._json({"commitUrl": f"{self.url}/datasets/{repo.repo_id}/commit/{oid}", "commitOid": oid,
                 "commitMessage": repo.commits[-1]["message"], "pullRequestUrl": None})

    def _resolve(self, h: Any, repo: Repo | None, path: str) -> None:
        if repo is None or not (repo.files / path).is_file():
            return h._json({"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})
        data = (repo.files / path).read_bytes()
        headers = {"ETag": f'"{git_oid(data)}"', "X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if lfs_tracked(path, len(data)):  # the Hub answers an LFS file with its sha256
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        ranged = re.match(r"bytes=(\d*)-(\d*)", h.headers.get("Range") or "")
        if ranged and h.command == "GET":
            start = int(ranged.group(1) or 0)
            end = min(int(ranged.group(2)) if ranged.group(2) else len(data) - 1, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return h._send(206, data[start:end + 1], "application/octet-stream", headers)
        h._send(200, data, "application/octet-stream", headers)
