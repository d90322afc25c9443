"""The build: sources -> units -> (worker pool) -> rows -> shards -> card.

Units are processed in manifest order (sources in order, files sorted), by one
process or an ordered pool of ``workers`` processes; rows stream to the shard
writers as results arrive, so the output is the same whatever ``workers`` is
and memory does not grow with the dataset.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import islice
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import card
from .accounting import REJECTS, Ledger
from .errors import Reject
from .sources import ADAPTERS
from .sources.base import Unit
from .sources.manifest import Manifest
from .text.describers import WORKER_DESCRIBERS
from .text.models import MODEL_DESCRIBERS, TextOptions
from .text.stage import TextStage
from .triplets import TripletOptions, UnitResult, process_unit
from .writers import DatasetWriter, Shard, ShardLimits

BUILD_JSON = "build.json"
OUTPUTS = ("data", "webdataset", REJECTS, BUILD_JSON, "README.md")
PACKAGES = ("medtrinity-25m", "datasets", "pyarrow", "pydicom", "nibabel", "numpy", "pillow", "webdataset")


class BuildError(RuntimeError):
    """A build that cannot start (the output folder, the options)."""


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    formats: tuple[str, ...] = ("parquet",)
    workers: int = 1
    overwrite: bool = False
    dedup: bool = False  # drop exact pixel duplicates in every source (medpix sources always do)
    triplets: TripletOptions = field(default_factory=TripletOptions)
    text: TextOptions = field(default_factory=TextOptions)
    limits: ShardLimits = field(default_factory=ShardLimits)
    repo: str = "medtrinity-25m"  # the name the card's examples load


@dataclass
class Progress:
    """What a progress display is told after each unit."""

    units_total: int
    units_done: int = 0
    rows: int = 0
    rejects: int = 0
    started: float = field(default_factory=time.monotonic)


ProgressHook = Callable[[Progress], None]


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _prepare(out: Path, overwrite: bool) -> None:
    if (out / f"{out.name}.py").exists():
        raise BuildError(f"{out} holds {out.name}.py: load_dataset refuses such a folder; remove it")
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise BuildError(f"{out} already holds a build ({', '.join(existing)}); pass --overwrite to replace it")
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _results(units: list[Unit], options: BuildOptions) -> Iterator[UnitResult]:
    """Results in unit order; at most ``4 * workers`` units in flight."""
    work = partial(process_unit, options=options.triplets)
    if options.workers <= 1 or len(units) <= 1:
        yield from map(work, units)
        return
    ctx = multiprocessing.get_context("forkserver")  # no fork of a process holding Arrow threads
    todo = iter(units)
    with ProcessPoolExecutor(min(options.workers, len(units)), mp_context=ctx) as pool:
        pending = deque(pool.submit(work, unit) for unit in islice(todo, 4 * options.workers))
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool as exc:
                raise BuildError(f"a worker process died ({exc}); the build stopped") from None
            for unit in islice(todo, 1):
                pending.append(pool.submit(work, unit))
            yield result


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _collect(manifest: Manifest, ledger: Ledger) -> list[Unit]:
    units: list[Unit] = []
    for spec in manifest.sources:
        found, problems = ADAPTERS[spec.format].units(spec)
        for problem in problems:
            ledger.reject_other(spec.name, problem.file, "pairing", problem.reason)
        units += found
    return units


def build(manifest: Manifest, options: BuildOptions, progress: ProgressHook | None = None) -> dict[str, Any]:
    """Run a whole build; return what it wrote to ``build.json``."""
    started = time.time()
    out = options.out
    _prepare(out, options.overwrite)
    ledger = Ledger(out).open()
    shards: list[dict[str, Any]] = []

    def record_shard(shard: Shard) -> None:
        shards.append({"path": shard.path.relative_to(out).as_posix(), "format": shard.format,
                       "modality": shard.modality, "split": shard.split, "rows": shard.rows,
                       "bytes": shard.path.stat().st_size, "sha256": sha256_file(shard.path)})

    try:
        stage, text_info = _text_stage(options)
        units = _collect(manifest, ledger)
        state = Progress(units_total=len(units))
        with DatasetWriter(out, options.formats, options.limits, record_shard) as writer:
            _consume(stage(_results(units, options)), writer, ledger, Deduplicator(options.dedup), state, progress)
            writer.close()
    finally:
        ledger.close()
    summary = _summary(manifest, options, ledger, shards, started)
    summary.update(text_info)
    _write_card(manifest, options, ledger, shards)
    (out / BUILD_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


class Deduplicator:
    """Exact duplicates by decoded pixels: the first row seen is kept."""

    def __init__(self, everywhere: bool) -> None:
        self.everywhere = everywhere
        self.seen: dict[str, str] = {}

    def twin(self, result: UnitResult, index: int) -> str | None:
        """The id of an earlier row with the same pixels, if this row is to be dropped."""
        spec = result.unit.spec
        if not (self.everywhere or spec.dedup):
            return None
        row_id = result.rows[index]["id"]
        first = self.seen.setdefault(result.hashes[index], row_id)
        if first == row_id or result.unit_id in spec.curation:  # a person's keep overrides the rule
            return None
        return first


def _consume(results: Iterable[UnitResult], writer: DatasetWriter, ledger: Ledger, dedup: Deduplicator,
             state: Progress, progress: ProgressHook | None) -> None:
    for result in results:
        unit = result.unit
        kept, dropped = _dedup(result, dedup)
        if result.reject is not None or (dropped and not kept):
            reject = result.reject or dropped[0][1]
            ledger.reject_file(unit.spec.name, unit.rel, reject.stage, reject.reason, rule=reject.rule,
                               id=dropped[0][0]["id"] if dropped else result.unit_id)
            state.rejects += 1
        else:
            for row, reject in dropped:
                ledger.reject_other(unit.spec.name, unit.rel, reject.stage, reject.reason, rule=reject.rule,
                                    id=row["id"])
            for row in kept:
                writer.write(row, unit.split)
            ledger.accept_file(unit.spec.name, kept, unit.split)
            state.rows += len(kept)
        state.units_done += 1
        if progress:
            progress(state)


def _text_stage(options: BuildOptions) -> tuple[TextStage, dict[str, Any]]:
    """The main process's text stage, and what build.json records of it."""
    text = options.text
    name = options.triplets.describer
    try:
        describer = None if name in WORKER_DESCRIBERS else MODEL_DESCRIBERS[name](text)
        retriever = None
        if text.kb:
            from .knowledge import KnowledgeBase, Retriever

            retriever = Retriever(KnowledgeBase.load(Path(text.kb)), k=text.k)
    except (KeyError, ValueError, Reject) as exc:
        raise BuildError(f"describer {name!r}: {exc}") from None
    info = {"describer": describer.info() if describer else WORKER_DESCRIBERS[name]().info()}
    if retriever is not None:
        info["knowledge"] = {"kb": Path(text.kb).name, "k": text.k, "encoder": retriever.kb.info["encoder"],
                             "snippets": retriever.kb.info["snippets"], "index": retriever.kb.info["index"]}
    concurrency = text.llm.concurrency if text.llm else 1
    return TextStage(describer, retriever, concurrency), info


def _dedup(result: UnitResult, dedup: Deduplicator) -> tuple[list[dict], list[tuple[dict, Reject]]]:
    kept, dropped = [], list(result.dropped)
    for index, row in enumerate(result.rows):
        twin = dedup.twin(result, index)
        if twin is None:
            kept.append(row)
        else:
            dropped.append((row, Reject("curation", f"same pixels as {twin}", rule="duplicate_pixels")))
    return kept, dropped


def _sources(manifest: Manifest, ledger: Ledger) -> list[dict[str, Any]]:
    rows = []
    for spec in manifest.sources:
        count = ledger.sources.get(spec.name)
        rows.append({"name": spec.name, "format": spec.format, "license": spec.license,
                     "files": count.files if count else 0, "rows": count.rows if count else 0,
                     "rejected": count.rejected if count else 0})
    return rows


def _summary(manifest: Manifest, options: BuildOptions, ledger: Ledger, shards: list[dict[str, Any]],
             started: float) -> dict[str, Any]:
    seconds = time.time() - started
    summary = ledger.summary()
    summary.update(
        manifest={"name": manifest.path.name, "sha256": manifest.sha256},
        sources=_sources(manifest, ledger),
        options={"formats": list(options.formats), "workers": options.workers,
                 "limits": asdict(options.limits), "png_level": options.triplets.png_level},
        shards=sorted(shards, key=lambda s: s["path"]),
        versions=_versions(),
        platform=f"{sys.platform}-{platform.machine()}",
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        seconds=round(seconds, 3),
        rows_per_second=round(ledger.rows_total / seconds, 1) if seconds > 0 else None,
    )
    return summary


def _write_card(manifest: Manifest, options: BuildOptions, ledger: Ledger, shards: list[dict[str, Any]]) -> None:
    layout = "parquet" if "parquet" in options.formats else "webdataset"
    splits: dict[str, list[str]] = {}
    for shard in shards:
        if shard["format"] == layout and shard["split"] not in splits.setdefault(shard["modality"], []):
            splits[shard["modality"]].append(shard["split"])
    inputs = card.CardInputs(
        ledger=ledger, layout=layout, splits=splits, shards=shards, sources=_sources(manifest, ledger),
        describer=options.triplets.describer, version=_versions()["medtrinity-25m"], repo=options.repo,
    )
    (options.out / "README.md").write_text(card.render(inputs), encoding="utf-8")
