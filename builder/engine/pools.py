"""Where work units run: a local process pool, or a Ray cluster.

Both map ``process_unit`` over units and yield the results in unit order, with
at most ``window`` units in flight, so memory stays bounded and the output is
the same whatever runs it. ``ENGINES`` maps ``--engine`` to a pool class.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from itertools import islice
from typing import Any, Iterable, Iterator, Protocol

from ..sources.base import Unit
from ..triplets import TripletOptions, UnitResult, process_unit


class PoolError(RuntimeError):
    """A pool that cannot run (a worker died, Ray is missing)."""


class Pool(Protocol):
    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]: ...

    def close(self) -> None: ...


class SerialPool:
    """Units in this process, one after the other."""

    def __init__(self, options: TripletOptions, workers: int = 1, **_: Any) -> None:
        self.work = partial(process_unit, options=options)

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        return map(self.work, units)

    def close(self) -> None:
        pass


class LocalPool:
    """``workers`` processes of this machine (forkserver: no fork of Arrow's threads)."""

    def __init__(self, options: TripletOptions, workers: int, **_: Any) -> None:
        self.work = partial(process_unit, options=options)
        self.window = 4 * workers
        ctx = multiprocessing.get_context("forkserver")
        self.executor = ProcessPoolExecutor(workers, mp_context=ctx)

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        todo = iter(units)
        pending = deque(self.executor.submit(self.work, unit) for unit in islice(todo, self.window))
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool as exc:
                raise PoolError(f"a worker process died ({exc})") from None
            for unit in islice(todo, 1):
                pending.append(self.executor.submit(self.work, unit))
            yield result

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)


class RayPool:
    """Ray tasks on a cluster (``address``) or a local Ray; results fetched in order."""

    def __init__(self, options: TripletOptions, workers: int, address: str | None = None, **_: Any) -> None:
        try:
            import ray
        except ImportError:
            raise PoolError("--engine ray needs: pip install 'medtrinity-25m[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"num_cpus": workers}))
        self.task = ray.remote(process_unit).options(max_retries=2)
        self.options = ray.put(options)
        self.window = 4 * max(workers, int(ray.cluster_resources().get("CPU", workers)))

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        todo = iter(units)
        pending = deque(self.task.remote(unit, self.options) for unit in islice(todo, self.window))
        while pending:
            result = self.ray.get(pending.popleft())
            for unit in islice(todo, 1):
                pending.append(self.task.remote(unit, self.options))
            yield result

    def close(self) -> None:
        pass  # a Ray the build started ends with the process; a cluster stays up


ENGINES: dict[str, type] = {"local": LocalPool, "ray": RayPool}


def make_pool(engine: str, options: TripletOptions, workers: int, address: str | None = None) -> Pool:
    if engine == "local" and workers <= 1:
        return SerialPool(options)
    return ENGINES[engine](options, workers=workers, address=address)
