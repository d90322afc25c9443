"""``--engine ray``: units as Ray tasks; model describers as Ray actors.

The same units run as Ray tasks on a cluster (``ray_address``) or a local Ray
with ``workers`` CPUs; results come back in unit order, at most four per CPU in
flight. A task reads its unit's inputs from a path every node sees (a shared
filesystem, or an object store URL a source reads) and returns its rows: only
the driver writes the dataset folder. ``info()`` says how many units each node
ran. ``describer_actors`` > 0 serves the model-backed describer from that many
actors, ``describer_gpus`` GPUs each; the text stage calls them from as many
threads.
"""

from __future__ import annotations

import queue
from collections import Counter, deque
from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterable, Iterator

from builder.errors import install_hint
from builder.options import option
from builder.pipeline.data import Unit, UnitResult
from builder.pipeline.engines.base import EngineError, cpu_count, main_describer
from builder.pipeline.process import TripletOptions, process_unit
from builder.pipeline.text.describers import DescriberHooks
from builder.pipeline.text.options import TextOptions


@dataclass(frozen=True)
class RayOptions:
    """``--engine ray``: the cluster, the CPUs of a local Ray, and the describer's actors."""

    workers: int = option(default_factory=cpu_count, help="Worker processes (with --engine ray: CPUs of a local Ray).",
                          cli={"show_default": "all cores"})
    ray_address: str | None = option(None, help="Ray cluster to join (default: start a local Ray).")
    describer_actors: int = option(0, help="Serve the openai/transformers describer from this many actors.")
    describer_gpus: float = option(0.0, help="GPUs each describer actor asks Ray for.")
    ray_resource: str | None = option(None, help="Run units only on the nodes that offer this custom resource (ray "
                                                 "start --resources '{\"NAME\": N}': N units at once on a node).")

    def start(self, triplets: TripletOptions) -> RayEngine:
        return RayEngine(self, triplets)


class RayPool:
    """Ray tasks on a cluster (``address``) or a local Ray; results fetched in order."""

    def __init__(self, options: TripletOptions, workers: int, address: str | None = None,
                 resource: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise EngineError(f"--engine ray needs: {install_hint('ray')}") from None
        self.ray = ray
        if not ray.is_initialized():
            # no address: a Ray of this build's own ("local"). Left as None, ray.init joins the cluster started last
            # on this machine (/tmp/ray/ray_current_cluster, or $RAY_ADDRESS): another build's or another
            # checkout's workers, running other code with other settings.
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     num_cpus=None if address else workers)
        self.task = ray.remote(_unit_on_node).options(max_retries=2, resources={resource: 1} if resource else None)
        self.options = ray.put(options)
        self.window = 4 * max(workers, int(ray.cluster_resources().get("CPU", workers)))
        self.nodes: Counter[str] = Counter()  # units each node ran

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        todo = iter(units)
        pending = deque(self.task.remote(unit, self.options) for unit in islice(todo, self.window))
        while pending:
            node, result = self.ray.get(pending.popleft())
            self.nodes[node] += 1
            for unit in islice(todo, 1):
                pending.append(self.task.remote(unit, self.options))
            yield result

    def close(self) -> None:
        pass  # a Ray the build started ends with the process; a cluster stays up


def _unit_on_node(unit: Unit, options: TripletOptions) -> tuple[str, UnitResult]:
    """A Ray task: one unit's rows, and the node that made them."""
    import ray

    return ray.get_runtime_context().get_node_id(), process_unit(unit, options)


class RayEngine:
    def __init__(self, options: RayOptions, triplets: TripletOptions) -> None:
        self.options = options
        self.pool = RayPool(triplets, options.workers, options.ray_address, options.ray_resource)

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        return self.pool.map(units)

    def describer(self, text: Any) -> Any:
        if self.options.describer_actors > 0:
            return RayDescribers(text, self.options.describer_actors, self.options.describer_gpus)
        return main_describer(text)

    def describer_concurrency(self, text: TextOptions) -> int:
        return self.options.describer_actors or text.concurrency

    def info(self) -> dict[str, Any]:
        return {"engine": "ray", "workers": self.options.workers, "describer_actors": self.options.describer_actors,
                "units_per_node": sorted(self.pool.nodes.values(), reverse=True)}

    def close(self) -> None:
        self.pool.close()


class _DescriberActor:
    """One model-backed describer inside a Ray actor (which may hold a GPU)."""

    def __init__(self, text: Any) -> None:
        self.describer = main_describer(text)

    def info(self) -> dict[str, Any]:
        return self.describer.info()

    def describe(self, request: Any) -> Any:
        from builder.errors import Reject

        try:
            return self.describer.describe(request)
        except Reject as exc:
            return exc


class RayDescribers(DescriberHooks):
    """A model-backed describer served by ``actors`` Ray actors, ``num_gpus`` each.

    The text stage calls :meth:`describe` from as many threads as there are
    actors (its scheduler's slots); each call takes an actor that is free, so
    every actor has one request at all times while there is work, and none waits
    behind another's.
    """

    def __init__(self, text: Any, actors: int, num_gpus: float) -> None:
        import ray

        remote: Any = ray.remote(num_gpus=num_gpus)(_DescriberActor) if num_gpus else ray.remote(_DescriberActor)
        self.ray = ray
        self.actors: list[Any] = [remote.remote(text) for _ in range(actors)]
        self.name = text.describer
        self._info = {**ray.get(self.actors[0].info.remote()), "ray_actors": actors, "num_gpus": num_gpus}
        self.free: queue.Queue[Any] = queue.Queue()
        for actor in self.actors:
            self.free.put(actor)

    def info(self) -> dict[str, Any]:
        return self._info

    def describe(self, request: Any) -> dict[str, str]:
        from builder.errors import Reject

        actor = self.free.get()
        try:
            answer: Any = self.ray.get(actor.describe.remote(request))
        finally:
            self.free.put(actor)
        if isinstance(answer, Reject):
            raise answer
        return dict(answer)
