"""``--engine local``: this machine's processes.

Units run in ``workers`` processes (forkserver; one worker: in this process) and
results come back in unit order, with at most ``4 x workers`` tasks in flight,
so memory stays bounded and the output is the same whatever the number of
workers. A task is a run of consecutive units sized to take about
``TASK_SECONDS`` (one slow unit, a volume, is a task alone; small images go
several to a task, so passing work and results between processes does not cost
more than the work). A model-backed describer runs in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, Iterable, Iterator

from builder import forkserver
from builder.errors import Reject, Stage
from builder.forkserver import start_forkserver
from builder.options import option
from builder.pipeline.data import Unit, UnitResult
from builder.pipeline.engines.base import cpu_count, main_describer
from builder.pipeline.engines.limits import limit_memory, memory_limit
from builder.pipeline.process import TripletOptions, process_unit
from builder.pipeline.text.options import TextOptions

GRACE_SECONDS = 30.0  # at most this long past a unit's limit before the main process replaces its worker
TASK_SECONDS = 0.05  # what one task should take: long enough to hide the cost of handing it to a worker
MAX_TASK_UNITS = 64


def _process_units(units: tuple[Unit, ...], options: TripletOptions) -> tuple[list[UnitResult], float]:
    """A worker's task: its units in order, and the seconds they took."""
    start = time.perf_counter()
    return [process_unit(unit, options) for unit in units], time.perf_counter() - start


class _TaskSize:
    """How many units the next task takes: ``TASK_SECONDS`` of work at the units' recent pace."""

    def __init__(self) -> None:
        self.per_unit: float | None = None

    def seen(self, units: int, seconds: float) -> None:
        """A faster pace is taken at once (a fresh worker's first units pay its warm-up), a slower one gradually."""
        pace = seconds / max(1, units)
        if self.per_unit is None or pace <= self.per_unit:
            self.per_unit = pace
        else:
            self.per_unit = 0.7 * self.per_unit + 0.3 * pace

    def next(self) -> int:
        if self.per_unit is None:
            return 1
        return max(1, min(MAX_TASK_UNITS, int(TASK_SECONDS / max(self.per_unit, 1e-6))))


def _start_worker(extra: int, parent: int) -> None:
    """A worker's start: what the forkserver loads (a no-op once it has), cap its memory (see :mod:`.limits`), watch
    the build."""
    forkserver.load()
    limit_memory(extra)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="watch-build").start()


def _exit_with(parent: int) -> None:
    """End this worker when the build's process is gone (``kill -9``): nothing else would, it waits for work."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


class SerialPool:
    """Units in this process, one after the other."""

    def __init__(self, options: TripletOptions) -> None:
        self.work = partial(process_unit, options=options)
        self.extra = options.memory_limit

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        for unit in units:
            with memory_limit(self.extra):
                result = self.work(unit)
            yield result

    def close(self) -> None:
        pass


class LocalPool:
    """``workers`` processes of this machine (forkserver: no fork of Arrow's threads).

    A unit that outlives ``timeout`` seconds, or whose worker dies (a decoder
    crash, the kernel's OOM killer), costs the pool its processes: they are
    replaced, the unit is tried once more alone, and if it fails again it
    becomes a reject; the other units in flight are submitted again.
    """

    def __init__(self, options: TripletOptions, workers: int) -> None:
        self.work = partial(process_unit, options=options)
        self.task = partial(_process_units, options=options)
        self.workers, self.window, self.timeout = workers, 4 * workers, options.unit_timeout
        self.extra = options.memory_limit
        self.executor = self._executor()

    def _executor(self) -> ProcessPoolExecutor:
        start_forkserver()  # a no-op when the CLI started it already
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"),
                                   initializer=_start_worker, initargs=(self.extra, os.getpid()))

    def _restart(self) -> None:
        for process in list(getattr(self.executor, "_processes", {}).values()):
            process.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = self._executor()

    def _deadline(self, units: tuple[Unit, ...]) -> float | None:
        """Seconds the main process waits for a task: the units' own limits, then a grace for the worker's alarm
        to fire first (a decoder stuck in C code hears it only when it returns)."""
        if self.timeout <= 0:
            return None
        limit = self.timeout * sum(unit.weight for unit in units)
        return limit + min(GRACE_SECONDS, max(1.0, 0.25 * limit))

    def _alone(self, unit: Unit, timed_out: bool) -> UnitResult:
        self._restart()
        try:
            return self.executor.submit(self.work, unit).result(timeout=self._deadline((unit,)))
        except (BrokenProcessPool, TimeoutError) as exc:
            self._restart()
            return _failed(unit, timed_out or isinstance(exc, TimeoutError), self.timeout)

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        todo, size = iter(units), _TaskSize()
        pending: deque[tuple[tuple[Unit, ...], Any]] = deque()

        def submit() -> bool:
            task = tuple(islice(todo, size.next()))
            if task:
                pending.append((task, self.executor.submit(self.task, task)))
            return bool(task)

        while len(pending) < self.window and submit():
            pass
        while pending:
            task, future = pending.popleft()
            try:
                results, seconds = future.result(timeout=self._deadline(task))
                size.seen(len(task), seconds)
            except (BrokenProcessPool, TimeoutError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                if timed_out and len(task) == 1:  # the unit that outlived its limit is known: no second try
                    self._restart()
                    results = [_failed(task[0], True, self.timeout)]
                else:  # which of them it was: each alone
                    results = [self._alone(unit, timed_out) for unit in task]
                pending = deque((t, self.executor.submit(self.task, t)) for t, _ in pending)
            submit()
            yield from results

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)


def _failed(unit: Unit, timed_out: bool, limit: float) -> UnitResult:
    """A unit the pool gave up on: past its time limit (stage timeout, as with one worker) or its worker died."""
    if timed_out:
        return UnitResult(unit, reject=Reject(Stage.TIMEOUT, f"reading took longer than the {limit * unit.weight:g} s "
                                                             "limit (--unit-timeout)"))
    return UnitResult(unit, reject=Reject(Stage.WORKER, "a worker process died twice while reading this file"))


@dataclass(frozen=True)
class LocalOptions:
    """``--engine local``: how many worker processes."""

    workers: int = option(default_factory=cpu_count, help="Worker processes (with --engine ray: CPUs of a local Ray).",
                          cli={"show_default": "all cores"})

    def start(self, triplets: TripletOptions) -> LocalEngine:
        return LocalEngine(self, triplets)


class LocalEngine:
    def __init__(self, options: LocalOptions, triplets: TripletOptions) -> None:
        self.options = options
        self.pool: SerialPool | LocalPool = SerialPool(triplets) if options.workers <= 1 else \
            LocalPool(triplets, options.workers)

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        return self.pool.map(units)

    def describer(self, text: Any) -> Any:
        return main_describer(text)

    def describer_concurrency(self, text: TextOptions) -> int:
        return text.concurrency

    def info(self) -> dict[str, Any]:
        return {"engine": "local", "workers": self.options.workers}

    def close(self) -> None:
        self.pool.close()
