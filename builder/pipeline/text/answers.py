"""Model answers kept as they arrive, so that none is paid for twice.

One append-only JSON-lines file per describer setting (model, prompt version,
style, sampling: everything in its ``info()`` but the server's address) in the
user's cache folder (:func:`builder.layout.cache_dir`). Each answer is written
and flushed the moment it arrives (a ``kill -9`` loses nothing written; the file
is fsynced every second), keyed by the row id and a digest of what the model
was shown; a resumed build, or a rebuild with the same setting, asks the model
only for rows it has no answer for.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from builder.errors import Reject
from builder.layout import cache_dir
from builder.pipeline.text.scheduler import Done

__all__ = ["AnswerCache", "ask", "request_key"]


def request_key(request: Any) -> str:
    """The row id and a digest of the request: its image, coarse caption, ROIs and knowledge."""
    shown = json.dumps([request.coarse_caption, [(r.label, list(r.bbox)) for r in request.rois],
                        list(request.knowledge), hashlib.sha256(request.image_png or b"").hexdigest()]
                       + ([request.correction] if getattr(request, "correction", "") else []))
    return f"{request.id}:{hashlib.sha256(shown.encode()).hexdigest()[:16]}"


class AnswerCache:
    def __init__(self, info: dict[str, Any], folder: Path | None = None) -> None:
        scope = json.dumps({k: v for k, v in info.items() if k != "base_url"}, sort_keys=True, default=str)
        folder = folder or cache_dir() / "answers"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{hashlib.sha256(scope.encode()).hexdigest()[:20]}.jsonl"
        self.answers: dict[str, dict[str, str]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.answers[entry["key"]] = entry["answer"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill: its row is asked again
        self.lock = threading.Lock()
        self.fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole build; close())
        self.synced = time.monotonic()
        self.hits = 0

    def get(self, key: str) -> dict[str, str] | None:
        found = self.answers.get(key)
        if found is not None:
            self.hits += 1
        return found

    def put(self, key: str, answer: dict[str, str]) -> None:
        with self.lock:
            self.answers[key] = answer
            self.fh.write(json.dumps({"key": key, "answer": answer}, ensure_ascii=False) + "\n")
            self.fh.flush()
            if time.monotonic() - self.synced > 1.0:
                os.fsync(self.fh.fileno())
                self.synced = time.monotonic()

    def close(self) -> None:
        with self.lock:
            if not self.fh.closed:
                self.fh.flush()
                os.fsync(self.fh.fileno())
                self.fh.close()


def ask(request: Any, done: Done, submit: Callable[[Any, Done], None], cache: AnswerCache | None) -> bool:
    """Give ``done`` the request's answer: the cache's (True), or the model's through ``submit``, kept in the
    cache the moment it arrives (False). What the build's text stage and ``describe`` both do per row."""
    key = request_key(request) if cache is not None else ""
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        done(cached)
        return True

    def keep(answer: dict[str, str] | Reject) -> None:
        if cache is not None and not isinstance(answer, Reject):
            cache.put(key, answer)
        done(answer)

    submit(request, keep)
    return False
