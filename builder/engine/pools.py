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

from ..errors import Reject
from ..sources.base import Unit
from ..triplets import TripletOptions, UnitResult, process_unit
from .limits import limit_memory, memory_limit


def _start_worker(extra: int) -> None:
    """A worker's start: load the readers' libraries, then cap its memory (see :mod:`.limits`)."""
    import nibabel  # noqa: F401
    import pydicom  # noqa: F401

    limit_memory(extra)


class PoolError(RuntimeError):
    """A pool that cannot run (a worker died, Ray is missing)."""


class Pool(Protocol):
    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]: ...

    def close(self) -> None: ...


class SerialPool:
    """Units in this process, one after the other."""

    def __init__(self, options: TripletOptions, workers: int = 1, **_: Any) -> None:
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

    def __init__(self, options: TripletOptions, workers: int, timeout: float = 600.0, **_: Any) -> None:
        self.work = partial(process_unit, options=options)
        self.workers, self.window, self.timeout = workers, 4 * workers, timeout
        self.extra = options.memory_limit
        self.executor = self._executor()

    def _executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"),
                                   initializer=_start_worker, initargs=(self.extra,))

    def _restart(self) -> None:
        for process in list(getattr(self.executor, "_processes", {}).values()):
            process.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = self._executor()

    def _alone(self, unit: Unit, why: str) -> UnitResult:
        self._restart()
        try:
            return self.executor.submit(self.work, unit).result(timeout=self.timeout)
        except (BrokenProcessPool, TimeoutError):
            self._restart()
            return UnitResult(unit, reject=Reject("read", f"{why} twice while reading this file"))

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        todo = iter(units)
        pending = deque((unit, self.executor.submit(self.work, unit)) for unit in islice(todo, self.window))
        while pending:
            unit, future = pending.popleft()
            try:
                result = future.result(timeout=self.timeout)
            except (BrokenProcessPool, TimeoutError) as exc:
                why = "took longer than the unit time limit" if isinstance(exc, TimeoutError) else \
                    "a worker process died"
                result = self._alone(unit, why)
                pending = deque((u, self.executor.submit(self.work, u)) for u, _ in pending)
            for unit in islice(todo, 1):
                pending.append((unit, self.executor.submit(self.work, unit)))
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


def make_pool(engine: str, options: TripletOptions, workers: int, address: str | None = None,
              timeout: float = 600.0) -> Pool:
    if engine == "local" and workers <= 1:
        return SerialPool(options)
    return ENGINES[engine](options, workers=workers, address=address, timeout=timeout)


class _DescriberActor:
    """One model-backed describer inside a Ray actor (which may hold a GPU)."""

    def __init__(self, text: Any) -> None:
        from ..text.models import MODEL_DESCRIBERS

        self.describer = MODEL_DESCRIBERS[text.describer](text)

    def info(self) -> dict[str, Any]:
        return self.describer.info()

    def describe(self, request: Any) -> Any:
        from ..errors import Reject

        try:
            return self.describer.describe(request)
        except Reject as exc:
            return exc


class RayDescribers:
    """A model-backed describer served by ``actors`` Ray actors, ``num_gpus`` each.

    The text stage calls :meth:`describe` from as many threads as there are
    actors; each call goes to the next actor in turn.
    """

    def __init__(self, text: Any, actors: int, num_gpus: float) -> None:
        import ray

        remote = ray.remote(num_gpus=num_gpus)(_DescriberActor) if num_gpus else ray.remote(_DescriberActor)
        self.ray = ray
        self.actors = [remote.remote(text) for _ in range(actors)]
        self.name = text.describer
        self._info = {**ray.get(self.actors[0].info.remote()), "ray_actors": actors, "num_gpus": num_gpus}
        self._turn = 0

    def info(self) -> dict[str, Any]:
        return self._info

    def describe(self, request: Any) -> dict[str, str]:
        from ..errors import Reject

        self._turn = (self._turn + 1) % len(self.actors)
        answer = self.ray.get(self.actors[self._turn].describe.remote(request))
        if isinstance(answer, Reject):
            raise answer
        return answer
