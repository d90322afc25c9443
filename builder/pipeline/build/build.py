"""The build: sources -> units -> (pool) -> text stage -> shards -> card.

Units are processed in manifest order (sources in order, files sorted) by a
pool (:mod:`builder.pipeline.engines.local`) that yields results in that order; rows stream
to the shard writers of the current work group, so memory does not grow with
the dataset and the output is the same whatever ``workers`` or ``engine`` is.
Work groups and resuming: :mod:`builder.pipeline.build.journal`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable

from builder.errors import Reject, Stage
from builder.layout import read_build_json, sha256_file
from builder.pipeline.accounting import Ledger
from builder.pipeline.build.collect import CollectError, collect
from builder.pipeline.build.journal import Journal, JournalError
from builder.pipeline.build.options import LOCAL_REJECTS, PROVENANCE, BuildError, BuildOptions
from builder.pipeline.build.outdir import BUILD_JSON, LOCK, FolderError, folder_lock, prepare
from builder.pipeline.build.router import DatasetWriter, Shard
from builder.pipeline.data import UnitResult
from builder.pipeline.engines import Engine, EngineError
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.manifest import Manifest
from builder.pipeline.text.answers import AnswerCache
from builder.pipeline.text.registry import DESCRIBERS
from builder.pipeline.text.stage import TextStage
from builder.privacy import IdKey, load_id_key, redact


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
             state: Progress, progress: ProgressHook | None, provenance: Any) -> None:
    for result in results:
        unit = result.unit
        if result.reject is not None and result.reject.skipped:  # passed over on purpose: counted, no line
            ledger.skip(unit.spec.name, result.reject.skipped)
            state.units_done += 1
            if progress:
                progress(state)
            continue
        kept, dropped = _dedup(result, dedup)
        where = {"public": unit.label, "names": unit.names} if result.reject is not None or dropped else {}
        if result.reject is not None or (dropped and not kept):
            reject = result.reject or dropped[0][1]
            ledger.reject_file(unit.spec.name, unit.rel, reject.stage, reject.reason, rule=reject.rule,
                               id=dropped[0][0]["id"] if dropped else result.unit_id, **where)
            for row, other in dropped[1:] if result.reject is None else []:  # each refused row has its line
                ledger.reject_other(unit.spec.name, unit.rel, other.stage, other.reason, rule=other.rule,
                                    id=row["id"], **where)
            ledger.note(result.notes)  # what was decided of its samples (screened by OCR, refused) still counts
            state.rejects += 1
        else:
            for row, reject in dropped:
                ledger.reject_other(unit.spec.name, unit.rel, reject.stage, reject.reason, rule=reject.rule,
                                    id=row["id"], **where)
            for row in kept:
                writer.write(row, unit.split)
            ledger.accept_file(unit.spec.name, kept, unit.split)
            ledger.note(result.notes)
            provenance.write(json.dumps({"file_id": unit.id, "source": unit.spec.name, "file": unit.rel,
                                         "ids": [row["id"] for row in kept]}, ensure_ascii=False) + "\n")
            state.rows += len(kept)
        state.units_done += 1
        if progress:
            progress(state)


def _text_stage(options: BuildOptions, engine: Engine) -> tuple[TextStage, dict[str, Any]]:
    """The main process's text stage, and what build.json records of it."""
    text = options.text
    name = text.describer
    try:
        entry = DESCRIBERS[name]
        describer = engine.describer(text) if entry.where == "main" else None
        retriever = None
        if text.kb:
            from builder.pipeline.knowledge import KnowledgeBase, Retriever

            retriever = Retriever(KnowledgeBase.load(Path(text.kb)), k=text.k)
            if name != "transformers":  # a local checkpoint describing in this process keeps torch's threads
                _one_thread()  # beside the workers, torch's own threads only compete with them for the cores
            retriever.kb.search(["warm up"], 1)  # the encoder loads now, not inside the first batch
    except (KeyError, ValueError, Reject) as exc:
        raise BuildError(f"describer {name!r}: {exc}") from None
    info = {"describer": describer.info() if describer else entry.make(text).info()}
    if retriever is not None:
        info["knowledge"] = {"kb": Path(str(text.kb)).name, "k": text.k, "encoder": retriever.kb.info["encoder"],
                             "snippets": retriever.kb.info["snippets"], "index": retriever.kb.info["index"]}
    cache = AnswerCache(describer.info()) if describer is not None and text.cache_answers else None
    return TextStage(describer, retriever, engine.describer_concurrency(text), cache=cache,
                     on_contradiction=text.on_contradiction), info


def _one_thread() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def _record(group: int, ledger: Ledger, shards: list[Shard], root: Path, hashes: dict[str, str]) -> dict[str, Any]:
    return {"group": group, "ledger": ledger.to_dict(), "rejects": ledger.lines, "hashes": hashes,
            "shards": [{"staged": s.path.relative_to(root).as_posix(), "format": s.format, "modality": s.modality,
                        "split": s.split, "rows": s.rows, "bytes": s.path.stat().st_size,
                        "sha256": sha256_file(s.path)} for s in shards]}


def build(manifest: Manifest, options: BuildOptions, progress: ProgressHook | None = None) -> dict[str, Any]:
    """Run (or resume) a whole build; return what it wrote to ``build.json``.

    The folder is locked for the whole build (a second build into it fails at
    once), and only a new folder, an unfinished build's, or (with ``overwrite``)
    a finished build's holding nothing else, is written into.
    """
    manifest = manifest.with_settings(options.source_flags)
    try:
        options = replace(options, triplets=options.triplets.resolved())  # workers are given the encoder's name
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    asking = [s.name for s in manifest.sources if s.roi is not None and s.roi.method == "command"]
    if asking and not options.allow_commands:
        raise BuildError(f"source(s) {', '.join(asking)} ask to run a local command (roi method command); read "
                         "the manifest, then pass --allow-commands to allow it")
    try:
        started = time.time()
        prepare(options.out, options.overwrite, options.demo)
        try:
            key = load_id_key(options.id_key)
        except ValueError as exc:
            raise BuildError(str(exc)) from None
        listed = collect(manifest, key)  # a source with no input stops the build before its folder exists
        with folder_lock(options.out):
            prepare(options.out, options.overwrite, options.demo)  # again, now that no other build can start
            finished = _finished(options)
            return finished if finished is not None else _run(manifest, options, progress, key, listed, started)
    except (FolderError, CollectError, JournalError) as exc:
        raise BuildError(str(exc)) from None


def _finished(options: BuildOptions) -> dict[str, Any] | None:
    """The build.json of a build killed after its last file, before its journal was removed (then removed now)."""
    journal = Journal(options.out)
    doc = read_build_json(options.out) if journal.exists() and not options.overwrite else None
    if doc is not None:
        journal.remove()
    return doc


def _run(manifest: Manifest, options: BuildOptions, progress: ProgressHook | None, key: IdKey,
         listed: tuple[list[Any], Ledger], started: float) -> dict[str, Any]:
    units, setup = listed
    journal = Journal(options.out, options.limits)
    records = journal.start({**options.fingerprint(manifest), "id_key": key.fingerprint})
    try:
        engine = options.engine_options.start(options.triplets)
    except EngineError as exc:
        raise BuildError(str(exc)) from None
    try:
        stage, text_info = _text_stage(options, engine)
    except BuildError:
        engine.close()
        raise
    if not any(r["group"] == -1 for r in records):
        record = _record(-1, setup, [], journal.root, {})
        journal.commit(record)
        records.append(record)
    done = {r["group"] for r in records}
    dedup = Deduplicator(options.triplets.dedup, {k: v for r in records for k, v in r.get("hashes", {}).items()})
    size = max(1, options.shard_units)
    groups = [(g, units[start:start + size]) for g, start in enumerate(range(0, len(units), size))]
    state = Progress(units_total=len(units), resumed=sum(len(u) for g, u in groups if g in done))
    state.units_done = state.resumed
    todo = [(group, members) for group, members in groups if group not in done]
    # one stream through the pool and the model stage for all groups: a group's last rows (a retry, a slow call, a
    # worker's last volume) are finished while the next group's are already in flight, not drained with both idle
    results = stage(engine.map([unit for _, members in todo for unit in members]))
    try:
        for group, members in todo:
            records.append(_group(group, options, journal, islice(results, len(members)), dedup, state, progress))
    except EngineError as exc:
        raise BuildError(f"{exc}; run the build again to resume") from None
    finally:
        stage.close()
        text_info["engine"] = engine.info()  # after the run: what ran where
        engine.close()
    if stage.describer is not None:
        text_info["model_stage"] = stage.report()
    if not any(r["group"] == CLOSING for r in records):
        record = _record(CLOSING, _unmatched(manifest, units, journal, records), [], journal.root, {})
        journal.commit(record)
        records.append(record)
    from builder.pipeline.build.finish import finish

    return finish(manifest, options, journal, records, text_info, started)


CLOSING = -2  # the journal record of what only the whole build can tell (inputs no unit read)


def _unmatched(manifest: Manifest, units: list[Any], journal: Journal, records: list[dict[str, Any]]) -> Ledger:
    """Reject lines for the inputs that no unit accounted for (a release's caption rows whose image no shard held):
    each adapter's ``unmatched`` is asked once every group is done."""
    ledger = Ledger()

    @lru_cache(maxsize=1)
    def seen() -> set[str]:  # read only for an adapter that asks
        ids = {line["id"] for r in records for line in r["rejects"] if line.get("id")}
        for part in sorted(journal.provenance.glob("g*.jsonl")):
            ids.update(i for line in part.read_text(encoding="utf-8").splitlines() for i in json.loads(line)["ids"])
        return ids

    for spec in manifest.sources:
        adapter = ADAPTERS[spec.format]
        for problem in adapter.unmatched(spec, seen, units):
            ledger.reject_other(spec.name, problem.file, Stage.PAIRING, problem.reason,
                                public=f"{spec.name}:{problem.public}" if problem.public else spec.name,
                                names=() if adapter.public_names else (problem.file,))
    return ledger


def _group(group: int, options: BuildOptions, journal: Journal, results: Iterable[UnitResult], dedup: Deduplicator,
           state: Progress, progress: ProgressHook | None) -> dict[str, Any]:
    """Write one work group's results (one per member unit, in order) into staged shards and commit it."""
    ledger = Ledger()
    journal.provenance.mkdir(parents=True, exist_ok=True)
    with open(journal.provenance / f"g{group:05d}.jsonl", "w", encoding="utf-8") as provenance, \
            DatasetWriter(journal.shards, options.formats, options.limits, tag=f"g{group:05d}") as writer:
        _consume(results, writer, ledger, dedup, state, progress, provenance)
        shards = writer.close()
    record = _record(group, ledger, shards, journal.root, dedup.added)
    dedup.added = {}
    journal.commit(record)
    return record


__all__ = [
    "BUILD_JSON",
    "LOCAL_REJECTS",
    "LOCK",
    "PROVENANCE",
    "BuildError",
    "BuildOptions",
    "Progress",
    "build",
    "redact",
    "sha256_file",
]
