"""The engine interface: where units run, and where a model-backed describer is served."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol

from builder.pipeline.data import Unit, UnitResult
from builder.pipeline.process import TripletOptions
from builder.pipeline.text.options import TextOptions

__all__ = ["Engine", "EngineEntry", "EngineError", "EngineOptions", "cpu_count", "main_describer"]


class EngineError(RuntimeError):
    """An engine that cannot run (a worker died, Ray is missing)."""


class Engine(Protocol):
    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        """``process_unit`` over ``units``, results in unit order, a bounded number in flight."""
        ...

    def describer(self, text: TextOptions) -> Any:
        """The build's model-backed describer, served where this engine serves it."""
        ...

    def describer_concurrency(self, text: TextOptions) -> int:
        """Calls the text stage makes to the describer at once."""
        ...

    def info(self) -> dict[str, Any]:
        """What build.json records of the engine."""
        ...

    def close(self) -> None: ...


class EngineOptions(Protocol):
    """One dataclass per engine: its fields are its options (:func:`builder.options.option`), ``start`` makes the
    engine."""

    def start(self, triplets: TripletOptions) -> Engine: ...


@dataclass(frozen=True)
class EngineEntry:
    """An entry of ``ENGINES``: the engine's options class (its ``start`` makes the engine)."""

    options: type
    help: str = ""


def cpu_count() -> int:
    """The default number of workers: every core."""
    return os.cpu_count() or 1


def main_describer(text: TextOptions) -> Any:
    """A ``main`` describer of the registry, in this process."""
    from builder.pipeline.text.registry import DESCRIBERS

    return DESCRIBERS[text.describer].make(text)
