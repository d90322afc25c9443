"""The text stage of the main process: knowledge retrieval, then model describers, beside the workers.

Unit results arrive in order from the workers. Each is looked up in the
knowledge base (the top-k snippets of each row's coarse caption; their ids go to
``knowledge``) and its rows' requests go to the :class:`Scheduler`, which keeps
exactly ``concurrency`` model calls in flight on its own threads while this
thread goes back to pulling results from the workers: the workers and the model
overlap instead of taking turns. Up to ``window`` rows wait for their answers
(memory stays bounded); results leave in order once all their rows are answered.
A row already answered under the same model and prompt (:class:`AnswerCache`)
is not asked again. Every answer is checked against its row's facts, and a
contradicted one asked again, flagged or rejected (:mod:`builder.pipeline.text.verdicts`).
A row whose description fails moves to the result's ``dropped`` list with its reason.
A row that already has its text (a release's own caption) is neither looked up nor described.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterable, Iterator

from builder.checks import facts_of
from builder.errors import Reject
from builder.pipeline.data import UnitResult
from builder.pipeline.knowledge.index import Retriever
from builder.pipeline.text.answers import AnswerCache, ask
from builder.pipeline.text.describers import Describer
from builder.pipeline.text.scheduler import Done, Scheduler, one_try
from builder.pipeline.text.verdicts import OnContradiction, Verdict, Verdicts

__all__ = ["TextStage"]


@dataclass
class _Entry:
    result: UnitResult
    rows: int
    left: int = 0
    answers: dict[int, Verdict | Reject] = field(default_factory=dict)


class _Window:
    """Results waiting for their answers, in arrival order."""

    def __init__(self, waiting: int, held: int) -> None:
        self.entries: deque[_Entry] = deque()
        self.changed = threading.Condition()
        self.rows = 0  # rows held, answered or not
        self.waiting = 0  # rows still waiting for their answer
        self.limits = (waiting, held)

    def add(self, entry: _Entry) -> None:
        with self.changed:
            self.entries.append(entry)
            self.rows += entry.rows
            self.waiting += entry.left

    def room(self) -> bool:
        """Another result may come in: few rows wait for answers, and not too many are held behind the first."""
        return self.waiting < self.limits[0] and self.rows < self.limits[1]

    def answer(self, entry: _Entry, index: int, answer: Verdict | Reject) -> None:
        with self.changed:
            entry.answers[index] = answer
            entry.left -= 1
            self.waiting -= 1
            self.changed.notify_all()

    def done(self) -> list[_Entry]:
        with self.changed:
            out = []
            while self.entries and self.entries[0].left == 0:
                entry = self.entries.popleft()
                self.rows -= entry.rows
                out.append(entry)
            return out

    def wait(self, more: bool) -> None:
        """Until the first result is answered (or, while more may come in, until there is room)."""
        with self.changed:
            self.changed.wait_for(lambda: not self.entries or self.entries[0].left == 0 or (more and self.room()))


class TextStage:
    def __init__(self, describer: Describer | None, retriever: Retriever | None, concurrency: int,
                 window: int | None = None, cache: AnswerCache | None = None,
                 on_contradiction: OnContradiction = "retry") -> None:
        self.describer, self.retriever, self.cache = describer, retriever, cache
        self.verdicts = Verdicts(on_contradiction)
        self.concurrency = max(1, concurrency)
        self.window = window or 8 * self.concurrency + 64
        self.scheduler: Scheduler | None = None
        self.counts = {"described": 0, "reused": 0, "failed": 0, "refused": 0}
        self.model_seconds = 0.0

    def __call__(self, results: Iterable[UnitResult]) -> Iterator[UnitResult]:
        if self.describer is None and self.retriever is None:
            yield from results
            return
        # a first row waiting for a retry or a slow call does not starve the model: more rows come in behind it,
        # up to four windows held in memory
        window = _Window(self.window, 4 * self.window)
        source = iter(results)
        more = True
        while True:
            for entry in window.done():
                yield self._finish(entry)
            if not more and not window.entries:
                return
            if more and window.room():
                result = next(source, None)
                if result is None:
                    more = False
                else:
                    self._start(result, window)
            else:
                window.wait(more)

    def _start(self, result: UnitResult, window: _Window) -> _Entry:
        slots = [i for i, row in enumerate(result.rows) if row["caption"] is None]
        entry = _Entry(result, len(result.rows))
        knowledge: dict[int, tuple[str, ...]] = {}
        if self.retriever is not None and slots:
            hits = self.retriever.lookup([result.rows[i]["coarse_caption"] for i in slots])
            for i, found in zip(slots, hits):
                result.rows[i]["knowledge"] = [h.id for h in found]
                knowledge[i] = tuple(h.text for h in found)
        if self.describer is None or not slots:
            window.add(entry)
            return entry
        entry.left = len(slots)
        window.add(entry)
        for i in slots:
            request = dataclasses.replace(result.requests[i], knowledge=knowledge.get(i, ()))
            done = self.verdicts.judge(request, facts_of(result.rows[i]), partial(window.answer, entry, i),
                                       self._ask_again)
            if ask(request, done, self._submit, self.cache):
                self.counts["reused"] += 1
        return entry

    def _ask_again(self, request: Any, done: Done) -> None:
        ask(request, done, self._submit, self.cache)

    def _submit(self, request: Any, done: Done) -> None:
        self._scheduler().submit(request, done)

    def _scheduler(self) -> Scheduler:
        if self.scheduler is None:
            self.scheduler = Scheduler(one_try(self.describer), self.concurrency)
            self.started = time.monotonic()
        return self.scheduler

    def _finish(self, entry: _Entry) -> UnitResult:
        result = entry.result
        gone: set[int] = set()
        for i, answer in sorted(entry.answers.items()):
            try:
                if isinstance(answer, Reject):
                    raise answer
                answer.store(result.rows[i], self.describer.name)  # type: ignore[union-attr]
                self.counts["described"] += 1
            except Reject as exc:
                result.dropped.append((result.rows[i], exc))
                gone.add(i)
                self.counts["failed" if exc.stage != "text" else "refused"] += 1
        if gone:
            result.rows = [row for i, row in enumerate(result.rows) if i not in gone]
            result.hashes = [h for i, h in enumerate(result.hashes) if i not in gone]
        result.requests = []
        return result

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
            self.model_seconds = time.monotonic() - self.started
        if self.cache is not None:
            self.cache.close()

    def report(self) -> dict[str, Any]:
        """What build.json says of the model stage: rows, reuse, concurrency reached, tokens per row."""
        if self.describer is None:
            return {}
        report: dict[str, Any] = {**self.counts, "checks": self.verdicts.report(), "concurrency": self.concurrency,
                                  "peak_in_flight": self.scheduler.peak if self.scheduler else 0,
                                  "model_seconds": round(self.model_seconds, 2)}
        extra = getattr(self.describer, "report", None)
        if extra is not None:
            report.update(extra())
            usage = report.get("usage", {})
            if usage.get("requests"):
                tokens = usage["prompt_tokens"] + usage["completion_tokens"]
                report["tokens_per_row"] = round(tokens / usage["requests"], 1)
        if self.model_seconds and self.counts["described"]:
            report["rows_per_second"] = round(self.counts["described"] / self.model_seconds, 2)
        return report
