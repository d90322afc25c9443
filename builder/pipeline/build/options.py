"""A build's settings (:class:`BuildOptions`), what it records of its environment, and its error.

Every setting is a field (:func:`builder.options.option`): the command line's
flags, build.json's ``options`` and the resume key are made from the fields.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from builder.formats import ShardLimits, format_choices
from builder.options import given, name_only, option, resume_key
from builder.pipeline.build.outdir import PRIVATE
from builder.pipeline.engines import ENGINES, EngineEntry
from builder.pipeline.engines.local import LocalOptions
from builder.pipeline.process import TripletOptions
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.manifest import Manifest
from builder.pipeline.text.options import TextOptions
from builder.registry import Registry

__all__ = ["LOCAL_REJECTS", "PACKAGES", "PROVENANCE", "BuildError", "BuildOptions", "versions"]

PROVENANCE = f"{PRIVATE}/provenance.jsonl"  # row ids -> the real input file: local, never published
LOCAL_REJECTS = f"{PRIVATE}/rejects.jsonl"  # the rejects with real paths, for the person running the build
PACKAGES = ("medtrinity-25m", "datasets", "pyarrow", "pydicom", "nibabel", "numpy", "pillow", "webdataset")


class BuildError(RuntimeError):
    """A build that cannot start (the output folder, the options)."""


def _format_names() -> Iterable[str]:
    return sorted(format_choices())


def _formats(name: str) -> tuple[str, ...]:
    return format_choices()[name]


def _engines() -> Registry[EngineEntry]:
    return ENGINES


def _adapters() -> Registry[Any]:
    return ADAPTERS


@dataclass(frozen=True)
class BuildOptions:
    out: Path = option(Path("medtrinity-25m"), flag=False, public=name_only, help="The dataset folder to write.")
    formats: tuple[str, ...] = option(("parquet",), flag="format", resume=True, choices=_format_names,
                                      cli={"default": "parquet", "convert": _formats},
                                      help="Shard format(s) to write.")
    engine: str = option("local", choices=ENGINES.names, help="Run units on this machine's processes or on Ray.")
    engine_options: Any = option(default_factory=LocalOptions, registry=_engines, chosen_by="engine",
                                 help="The chosen engine's own options.")
    overwrite: bool = option(False, help="Replace a build already in OUT.")
    shard_units: int = option(1000, resume=True, help="Input files per work group: each group writes its own shards "
                                                      "and is the unit of resuming.")
    triplets: TripletOptions = field(default_factory=TripletOptions)
    limits: ShardLimits = field(default_factory=ShardLimits)
    repo: str | None = option(None, flag=False, help="The name the card's examples load (default: OUT's name).")
    id_key: str | None = option(None, public=given, cli={"envvar": "MEDTRI_ID_KEY", "show_envvar": True},
                                help="Secret of the pseudonymous ids (default: a key kept in the user's config "
                                     "folder).")
    demo: bool = option(False, flag=False, resume=True, help="A demo build: may replace only an earlier demo.")
    allow_commands: bool = option(False, help="Let the manifest run local commands (roi method command); off: such "
                                              "a manifest is refused.")
    source_flags: Mapping[str, Any] = option(default_factory=dict, registry=_adapters, resume=True,
                                             help="Source formats' settings given on the command line "
                                                  "(--allow-burned-in): set in every source whose format has them.")

    @property
    def text(self) -> TextOptions:
        return self.triplets.text

    def fingerprint(self, manifest: Manifest) -> dict[str, Any]:
        """What must not change between a build and its resumption: every setting marked ``resume`` (the engine and
        its workers may change)."""
        return {"manifest": manifest.sha256, **resume_key(self)}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
