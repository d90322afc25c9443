"""The build: sources -> units -> (pool) -> text stage -> shards -> card.

Units are processed in manifest order (sources in order, files sorted) by a
pool (:mod:`builder.engine.pools`) that yields results in that order; rows stream
to the shard writers of the current work group, so memory does not grow with
the dataset and the output is the same whatever ``workers`` or ``engine`` is.
Work groups and resuming: :mod:`builder.engine.journal`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import card
from ..accounting import REJECTS, Ledger
from ..errors import Reject
from ..sources import ADAPTERS
from ..sources.base import Unit
from ..sources.manifest import Manifest
from ..sources.tables import file_stem
from ..text.template import Template, TemplateError
from ..text.describers import WORKER_DESCRIBERS
from ..text.models import MODEL_DESCRIBERS, TextOptions
from ..text.stage import TextStage
from ..triplets import TripletOptions, UnitResult
from ..writers import DatasetWriter, Shard, ShardLimits
from .journal import JOURNAL_DIR, Journal, JournalError
from .pools import PoolError, make_pool

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
    engine: str = "local"  # "local" | "ray"
    ray_address: str | None = None
    overwrite: bool = False
    shard_units: int = 1000  # input files per work group: the unit of resuming
    describer_actors: int = 0  # with engine ray: serve a model-backed describer from this many actors
    describer_gpus: float = 0.0  # GPUs each describer actor asks Ray for
    triplets: TripletOptions = field(default_factory=TripletOptions)
    text: TextOptions = field(default_factory=TextOptions)
    limits: ShardLimits = field(default_factory=ShardLimits)
    repo: str = "medtrinity-25m"  # the name the card's examples load

    def fingerprint(self, manifest: Manifest) -> dict[str, Any]:
        """What must not change between a build and its resumption."""
        return {"manifest": manifest.sha256, "formats": list(self.formats),
                "shard_units": self.shard_units, "limits": asdict(self.limits),
                "triplets": asdict(self.triplets), "describer": self.text.describer,
                "model": self.text.llm.model if self.text.llm else self.text.model, "kb": self.text.kb,
                "k": self.text.k}


@dataclass
class Progress:
    """What a progress display is told after each unit."""

    units_total: int
    units_done: int = 0
    rows: int = 0
    rejects: int = 0
    resumed: int = 0  # units skipped because their group was already done
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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _prepare(out: Path, overwrite: bool) -> None:
    if (out / f"{out.name}.py").exists():
        raise BuildError(f"{out} holds {out.name}.py: load_dataset refuses such a folder; remove it")
    if overwrite:
        for name in (*OUTPUTS, JOURNAL_DIR):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif (out / BUILD_JSON).exists():
        shutil.rmtree(out / JOURNAL_DIR, ignore_errors=True)  # a finished build's leftover journal
        raise BuildError(f"{out} already holds a finished build; pass --overwrite to replace it")
    elif not Journal(out).exists() and any((out / name).exists() for name in OUTPUTS):
        raise BuildError(f"{out} holds files of another build; pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)


class Deduplicator:
    """Exact duplicates by decoded pixels: the first row seen is kept."""

    def __init__(self, everywhere: bool, seen: dict[str, str] | None = None) -> None:
        self.everywhere = everywhere
        self.seen: dict[str, str] = seen or {}
        self.added: dict[str, str] = {}  # since the last group was committed

    def twin(self, result: UnitResult, index: int) -> str | None:
        """The id of an earlier row with the same pixels, if this row is to be dropped."""
        spec = result.unit.spec
        if not (self.everywhere or spec.dedup):
            return None
        row_id, key = result.rows[index]["id"], result.hashes[index]
        first = self.seen.setdefault(key, row_id)
        if first == row_id:
            self.added[key] = row_id
            return None
        return None if result.unit_id in spec.curation else first  # a person's keep overrides the rule


def _dedup(result: UnitResult, dedup: Deduplicator) -> tuple[list[dict], list[tuple[dict, Reject]]]:
    kept, dropped = [], list(result.dropped)
    for index, row in enumerate(result.rows):
        twin = dedup.twin(result, index)
        if twin is None:
            kept.append(row)
        else:
            dropped.append((row, Reject("curation", f"same pixels as {twin}", rule="duplicate_pixels")))
    return kept, dropped


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


def _describer(options: BuildOptions) -> Any:
    """The model-backed describer of the main process (None: the workers describe)."""
    name = options.text.describer
    if name in WORKER_DESCRIBERS:
        return None
    if options.engine == "ray" and options.describer_actors > 0:
        from .pools import RayDescribers

        return RayDescribers(options.text, options.describer_actors, options.describer_gpus)
    return MODEL_DESCRIBERS[name](options.text)


def _text_stage(options: BuildOptions) -> tuple[TextStage, dict[str, Any]]:
    """The main process's text stage, and what build.json records of it."""
    text = options.text
    name = options.triplets.describer
    try:
        describer = _describer(options)
        retriever = None
        if text.kb:
            from ..knowledge import KnowledgeBase, Retriever

            retriever = Retriever(KnowledgeBase.load(Path(text.kb)), k=text.k)
    except (KeyError, ValueError, Reject) as exc:
        raise BuildError(f"describer {name!r}: {exc}") from None
    info = {"describer": describer.info() if describer else WORKER_DESCRIBERS[name]().info()}
    if retriever is not None:
        info["knowledge"] = {"kb": Path(text.kb).name, "k": text.k, "encoder": retriever.kb.info["encoder"],
                             "snippets": retriever.kb.info["snippets"], "index": retriever.kb.info["index"]}
    concurrency = options.describer_actors or (text.llm.concurrency if text.llm else 1)
    return TextStage(describer, retriever, concurrency), info


def _collect(manifest: Manifest) -> tuple[list[Unit], Ledger]:
    """Every unit of the manifest, and a ledger of the problems found listing them."""
    units: list[Unit] = []
    setup = Ledger()
    for spec in manifest.sources:
        found, problems = ADAPTERS[spec.format].units(spec)
        for problem in problems:
            setup.reject_other(spec.name, problem.file, "pairing", problem.reason)
        units += [assign_split(unit) for unit in found] if spec.split_rule else found
    return units, setup


def assign_split(unit: Unit) -> Unit:
    """The unit with the split its group key draws (every unit of a group: the same)."""
    rule = unit.spec.split_rule
    values = {**{k: ("" if v is None else v) for k, v in unit.meta.items()}, "file": unit.rel,
              "stem": file_stem(unit.image), "source": unit.spec.name}
    try:
        key = Template(rule.by).render(values) or unit.rel
    except TemplateError:
        key = unit.rel
    return dataclasses.replace(unit, split=rule.assign(key))


def _record(group: int, ledger: Ledger, shards: list[Shard], root: Path, hashes: dict[str, str]) -> dict[str, Any]:
    return {"group": group, "ledger": ledger.to_dict(), "rejects": ledger.lines, "hashes": hashes,
            "shards": [{"staged": s.path.relative_to(root).as_posix(), "format": s.format, "modality": s.modality,
                        "split": s.split, "rows": s.rows, "bytes": s.path.stat().st_size,
                        "sha256": sha256_file(s.path)} for s in shards]}


def build(manifest: Manifest, options: BuildOptions, progress: ProgressHook | None = None) -> dict[str, Any]:
    """Run (or resume) a whole build; return what it wrote to ``build.json``."""
    started = time.time()
    out = options.out
    _prepare(out, options.overwrite)
    journal = Journal(out)
    try:
        records = journal.start(options.fingerprint(manifest))
    except JournalError as exc:
        raise BuildError(str(exc)) from None
    try:
        pool = make_pool(options.engine, options.triplets, options.workers, options.ray_address,
                         timeout=options.triplets.unit_timeout + 60)
    except PoolError as exc:
        raise BuildError(str(exc)) from None
    stage, text_info = _text_stage(options)
    units, setup = _collect(manifest)
    if not any(r["group"] == -1 for r in records):
        record = _record(-1, setup, [], journal.root, {})
        journal.commit(record)
        records.append(record)
    done = {r["group"] for r in records}
    seen = {k: v for r in records for k, v in r.get("hashes", {}).items()}
    dedup = Deduplicator(options.triplets.dedup, seen)
    size = max(1, options.shard_units)
    groups = [(g, units[start:start + size]) for g, start in enumerate(range(0, len(units), size))]
    state = Progress(units_total=len(units), resumed=sum(len(u) for g, u in groups if g in done))
    state.units_done = state.resumed
    try:
        for group, members in groups:
            if group in done:
                continue
            ledger = Ledger()
            with DatasetWriter(journal.shards, options.formats, options.limits, tag=f"g{group:05d}") as writer:
                _consume(stage(pool.map(members)), writer, ledger, dedup, state, progress)
                shards = writer.close()
            record = _record(group, ledger, shards, journal.root, dedup.added)
            dedup.added = {}
            journal.commit(record)
            records.append(record)
    except PoolError as exc:
        raise BuildError(f"{exc}; run the build again to resume") from None
    finally:
        pool.close()
    return _finish(manifest, options, journal, records, text_info, started)


def _finish(manifest: Manifest, options: BuildOptions, journal: Journal, records: list[dict[str, Any]],
            text_info: dict[str, Any], started: float) -> dict[str, Any]:
    out = options.out
    shards = journal.publish(records)
    ledger = Ledger()
    with open(out / REJECTS, "w", encoding="utf-8") as fh:
        for record in sorted(records, key=lambda r: r["group"]):
            ledger.merge(Ledger.from_dict(record["ledger"]))
            for line in record["rejects"]:
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    summary = _summary(manifest, options, ledger, shards, started)
    summary.update(text_info)
    _write_card(manifest, options, ledger, shards, text_info["describer"]["name"])
    (out / BUILD_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    journal.remove()
    return summary


def _sources(manifest: Manifest, ledger: Ledger) -> list[dict[str, Any]]:
    rows = []
    for spec in manifest.sources:
        count = ledger.sources.get(spec.name, {})
        rows.append({"name": spec.name, "format": spec.format, "license": spec.license,
                     "files": count.get("files", 0), "rows": count.get("rows", 0),
                     "rejected": count.get("rejected", 0)})
    return rows


def _summary(manifest: Manifest, options: BuildOptions, ledger: Ledger, shards: list[dict[str, Any]],
             started: float) -> dict[str, Any]:
    seconds = time.time() - started
    summary = ledger.summary()
    summary.update(
        manifest={"name": manifest.path.name, "sha256": manifest.sha256},
        sources=_sources(manifest, ledger),
        options={"formats": list(options.formats), "workers": options.workers, "engine": options.engine,
                 "shard_units": options.shard_units, "limits": asdict(options.limits),
                 "png_level": options.triplets.png_level},
        shards=sorted(shards, key=lambda s: s["path"]),
        versions=_versions(),
        platform=f"{sys.platform}-{platform.machine()}",
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        seconds=round(seconds, 3),
        rows_per_second=round(ledger.rows_total / seconds, 1) if seconds > 0 else None,
    )
    return summary


def _write_card(manifest: Manifest, options: BuildOptions, ledger: Ledger, shards: list[dict[str, Any]],
                describer: str) -> None:
    layout = "parquet" if "parquet" in options.formats else "webdataset"
    splits: dict[str, list[str]] = {}
    for shard in shards:
        if shard["format"] == layout and shard["split"] not in splits.setdefault(shard["modality"], []):
            splits[shard["modality"]].append(shard["split"])
    inputs = card.CardInputs(
        ledger=ledger, layout=layout, splits=splits, shards=shards, sources=_sources(manifest, ledger),
        describer=describer, version=_versions()["medtrinity-25m"], repo=options.repo,
    )
    (options.out / "README.md").write_text(card.render(inputs), encoding="utf-8")
