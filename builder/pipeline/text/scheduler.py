"""Model calls at a fixed concurrency: exactly ``slots`` requests in flight while there is work.

Each of ``slots`` threads takes the next ready job, makes one try and hands the
answer to the job's callback. A failed try is not retried in its slot: it waits
outside the slots for the server's ``Retry-After`` or the backoff, and the slot
takes the next job at once. A retry that is due goes before new jobs, so a row
that failed is not also queued behind every row that came after it (rows leave
the stage in order: a late row holds back all behind it). A call that hangs
holds one slot until the client's timeout, never the others.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from builder.errors import Reject
from builder.llm import TryAgain

__all__ = ["Done", "OneTry", "Scheduler", "SingleTry", "one_try"]


@runtime_checkable
class OneTry(Protocol):
    """A describer that can make one try at a time (model servers): the scheduler owns the retries."""

    tries: int
    backoff: float

    def try_once(self, request: Any) -> dict[str, str]: ...

    def failed(self, problem: str) -> Reject: ...


class SingleTry:
    """A describer without single tries (a local checkpoint, Ray actors) seen as one try that cannot be retried."""

    tries, backoff = 1, 0.0

    def __init__(self, describer: Any) -> None:
        self.describer = describer

    def try_once(self, request: Any) -> dict[str, str]:
        return self.describer.describe(request)

    def failed(self, problem: str) -> Reject:
        return Reject("describe", problem)


def one_try(describer: Any) -> OneTry:
    """The describer as the scheduler drives it: its own single tries where it has them."""
    return describer if isinstance(describer, OneTry) else SingleTry(describer)


Done = Callable[["dict[str, str] | Reject"], None]


@dataclass(order=True)
class _Job:
    ready: float
    order: int
    request: Any = field(compare=False)
    done: Done = field(compare=False)
    attempt: int = field(default=0, compare=False)


class Scheduler:
    def __init__(self, describer: OneTry, slots: int) -> None:
        self.describer, self.slots = describer, max(1, slots)
        self.jobs: deque[_Job] = deque()  # new jobs, first come first served
        self.retries: list[_Job] = []  # failed tries, a heap by the time they are due
        self.ready = threading.Condition()
        self.order = itertools.count()
        self.closed = False
        self.in_flight = self.peak = 0
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"model-slot-{i}")
                        for i in range(self.slots)]
        for thread in self.threads:
            thread.start()

    def submit(self, request: Any, done: Done) -> None:
        with self.ready:
            self.jobs.append(_Job(time.monotonic(), next(self.order), request, done))
            self.ready.notify()

    def _retry(self, job: _Job) -> None:
        with self.ready:
            heapq.heappush(self.retries, job)
            self.ready.notify()

    def _take(self) -> _Job | None:
        """The next job to try now: a due retry first, else the oldest new job."""
        if self.retries and self.retries[0].ready <= time.monotonic():
            return heapq.heappop(self.retries)
        return self.jobs.popleft() if self.jobs else None

    def _next(self) -> _Job | None:
        with self.ready:
            while True:
                job = self._take()
                if job is not None:
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                    return job
                if self.closed and not self.retries:
                    return None
                self.ready.wait(max(0.0, self.retries[0].ready - time.monotonic()) if self.retries else None)

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                answer: dict[str, str] | Reject | None = self.describer.try_once(job.request)
            except TryAgain as exc:
                answer = self._again(job, exc)
            except Reject as exc:
                answer = exc
            except Exception as exc:  # a bug of the describer: the row's reject line says so
                answer = Reject("internal", f"{type(exc).__name__}: {exc}")
            with self.ready:
                self.in_flight -= 1
            if answer is not None:
                job.done(answer)

    def _again(self, job: _Job, exc: TryAgain) -> Reject | None:
        """Queue the next try outside the slots; the job's reject after its last."""
        if job.attempt + 1 >= self.describer.tries:
            return self.describer.failed(exc.problem)
        wait = exc.retry_after if exc.retry_after is not None else self.describer.backoff * 2 ** job.attempt
        self._retry(_Job(time.monotonic() + wait, next(self.order), job.request, job.done, job.attempt + 1))
        return None

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify_all()
        for thread in self.threads:
            thread.join()
