"""The text stage of the main process: knowledge retrieval, then model describers.

Unit results arrive in order from the workers; the stage gathers them into
batches of about ``batch_rows`` rows, looks up the top-k snippets of each
distinct coarse caption (cached across the build), records the snippet ids in
``knowledge``, and, for a model-backed describer, describes the rows with up
to ``concurrency`` requests in flight. A row whose description fails is moved
to the result's ``dropped`` list with its reason; results leave in order.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator

from builder.errors import Reject
from builder.pipeline.knowledge.index import Retriever
from builder.pipeline.process import UnitResult, set_text
from builder.pipeline.text.describers import Describer


class TextStage:
    def __init__(self, describer: Describer | None, retriever: Retriever | None, concurrency: int = 8,
                 batch_rows: int = 64) -> None:
        self.describer, self.retriever = describer, retriever
        self.concurrency, self.batch_rows = max(1, concurrency), batch_rows

    def __call__(self, results: Iterable[UnitResult]) -> Iterator[UnitResult]:
        if self.describer is None and self.retriever is None:
            yield from results
            return
        batch: list[UnitResult] = []
        rows = 0
        for result in results:
            batch.append(result)
            rows += len(result.rows)
            if rows >= self.batch_rows:
                yield from self._process(batch)
                batch, rows = [], 0
        yield from self._process(batch)

    def _process(self, batch: list[UnitResult]) -> list[UnitResult]:
        # a row that already has its text (a published release's own caption) is neither looked up nor described
        slots = [(result, i) for result in batch for i in range(len(result.rows)) if result.rows[i]["caption"] is None]
        knowledge: list[list[str]] = [[] for _ in slots]
        if self.retriever is not None and slots:
            hits = self.retriever.lookup([r.rows[i]["coarse_caption"] for r, i in slots])
            for (result, i), found in zip(slots, hits):
                result.rows[i]["knowledge"] = [h.id for h in found]
            knowledge = [[h.text for h in found] for found in hits]
        if self.describer is not None:
            jobs = [(result, i, dataclasses.replace(result.requests[i], knowledge=tuple(texts)))
                    for (result, i), texts in zip(slots, knowledge)]
            with ThreadPoolExecutor(self.concurrency) as pool:
                answers = list(pool.map(self._describe, [job[2] for job in jobs]))
            failed: dict[int, set[int]] = {}
            for (result, i, _), answer in zip(jobs, answers):
                try:
                    if isinstance(answer, Reject):
                        raise answer
                    set_text(result.rows[i], answer, self.describer.name)
                except Reject as exc:
                    result.dropped.append((result.rows[i], exc))
                    failed.setdefault(id(result), set()).add(i)
            for result in batch:
                gone = failed.get(id(result), set())
                result.rows = [row for i, row in enumerate(result.rows) if i not in gone]
                result.hashes = [h for i, h in enumerate(result.hashes) if i not in gone]
                result.requests = []
        return batch

    def _describe(self, request: Any) -> dict[str, str] | Reject:
        try:
            return self.describer.describe(request)  # type: ignore[union-attr]
        except Reject as exc:
            return exc
