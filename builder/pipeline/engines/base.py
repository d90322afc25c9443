"""The engine interface: where units run, and where a model-backed describer is served."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

from builder.pipeline.process import TripletOptions, UnitResult
from builder.pipeline.sources.base import Unit
from builder.pipeline.text.options import TextOptions

__all__ = ["Engine", "EngineError", "EngineOptions", "main_describer"]


class EngineError(RuntimeError):
    """An engine that cannot run (a worker died, Ray is missing)."""


class Engine(Protocol):
    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        """``process_unit`` over ``units``, results in unit order, a bounded number in flight."""
        ...

    def describer(self, text: TextOptions) -> Any:
        """The build's model-backed describer, served where this engine serves it."""
        ...

    def info(self) -> dict[str, Any]:
        """What build.json records of the engine."""
        ...

    def close(self) -> None: ...


class EngineOptions(Protocol):
    """One dataclass per engine: its fields are its command-line options, ``start`` makes the engine."""

    def start(self, triplets: TripletOptions) -> Engine: ...


def main_describer(text: TextOptions) -> Any:
    """A ``main`` describer of the registry, in this process."""
    from builder.pipeline.text.registry import DESCRIBERS

    return DESCRIBERS[text.describer].make(text)
