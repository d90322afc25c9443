"""Registries: the one list of names of each kind of extension.

Every extension point (source formats, output formats, engines, describers,
exporters, proposers) is a :class:`Registry`: a typed mapping from a name to an
implementation, which the command line reads its choices from and the contract
tests iterate over. Packages may add entries through entry points
(``[project.entry-points."medtrinity_25m.<kind>"]``), loaded on first use, the
way mosaicml/streaming and MONAI take plugins.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Generic, Iterator, TypeVar

if TYPE_CHECKING:
    from importlib import metadata

__all__ = ["Registry", "UnknownName", "installed_entry_points"]

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no entry of a registry has; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@lru_cache(maxsize=1)
def installed_entry_points() -> metadata.EntryPoints:
    """Every installed package's entry points, read once per process: each read walks every installed
    distribution (about 10 ms here), and a build looks up half a dozen registries."""
    from importlib import metadata  # imported by the first read (its import costs more than the read)

    return metadata.EntryPoints(point for dist in metadata.distributions() for point in dist.entry_points)


class Registry(Generic[T]):
    """Named implementations of one extension point, built-in and from entry points."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = dict(entries or {})
        self._plugins_loaded = False

    @property
    def group(self) -> str:
        return f"medtrinity_25m.{self.kind}"

    def _plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in installed_entry_points().select(group=self.group):
            self._entries.setdefault(point.name, point.load())

    def register(self, name: str, entry: T) -> T:
        """Add (or replace) ``name``; returns the entry, so it can decorate."""
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def _find(self, name: object) -> T | None:
        """A built-in or registered entry, else a plugin's: entry points are read only for a name not found
        (they never replace an entry of the same name, so a lookup that finds one needs no plugins)."""
        if name not in self._entries:
            self._plugins()
        return self._entries.get(name)  # type: ignore[call-overload]

    def __getitem__(self, name: str) -> T:
        entry = self._find(name)
        if entry is None:
            raise UnknownName(f"{self.kind} {name!r} is not one of {', '.join(self.names())}")
        return entry

    def get(self, name: str, default: T | None = None) -> T | None:
        entry = self._find(name)
        return default if entry is None else entry

    def __contains__(self, name: object) -> bool:
        return self._find(name) is not None

    def __iter__(self) -> Iterator[str]:
        self._plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._plugins()
        return len(self._entries)

    def names(self) -> list[str]:
        self._plugins()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._plugins()
        return list(self._entries.items())

    def values(self) -> list[T]:
        self._plugins()
        return list(self._entries.values())
