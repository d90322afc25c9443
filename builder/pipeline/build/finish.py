"""The end of a build: shards published, rejects and provenance written, card and build.json.

What is written, and where it may go:

- published (``build.json`` ``published``): the shards, ``README.md``, ``rejects.jsonl``
  (input names replaced by public names or pseudonymous file ids, reasons
  scrubbed of paths) and ``build.json`` itself;
- local (``build.json`` ``local``, never pushed): ``.private/rejects.jsonl`` (the
  same lines with the real paths) and ``.private/provenance.jsonl`` (each file id
  and its row ids -> the real input file), and the folder's lock.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from builder.dataset.leakage import BENCHMARKS
from builder.formats import FORMATS
from builder.layout import depth_of
from builder.options import leaves
from builder.pipeline import card
from builder.pipeline.accounting import REJECTS, Ledger, local_line, public_line
from builder.pipeline.build.journal import Journal
from builder.pipeline.build.options import LOCAL_REJECTS, PROVENANCE, BuildError, BuildOptions, versions
from builder.pipeline.build.outdir import BUILD_JSON, LOCK
from builder.pipeline.burned_in import method as deidentification
from builder.pipeline.charts import CHARTS, write_charts
from builder.pipeline.croissant import croissant
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.manifest import Manifest
from builder.privacy import redact

__all__ = ["finish"]


def _jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def _rejects(out: Path, records: list[dict[str, Any]]) -> Ledger:
    """Both reject logs, and the merged ledger."""
    ledger = Ledger()
    lines: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: r["group"]):
        ledger.merge(Ledger.from_dict(record["ledger"]))
        lines += record["rejects"]
    _jsonl(out / REJECTS, [public_line(line) for line in lines])
    _jsonl(out / LOCAL_REJECTS, [local_line(line) for line in lines])
    return ledger


def _provenance(out: Path, journal: Journal, records: list[dict[str, Any]]) -> None:
    with open(out / PROVENANCE, "wb") as target:
        for group in sorted(r["group"] for r in records if r["group"] >= 0):
            part = journal.provenance / f"g{group:05d}.jsonl"
            if part.is_file():
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, target)


def duplicate_ids(journal: Journal, records: list[dict[str, Any]]) -> list[str]:
    """Row ids written twice (two inputs that claim one id, e.g. one image in two splits)."""
    seen: set[str] = set()
    twice: list[str] = []
    for group in sorted(r["group"] for r in records if r["group"] >= 0):
        part = journal.provenance / f"g{group:05d}.jsonl"
        for line in part.read_text(encoding="utf-8").splitlines() if part.is_file() else []:
            for row_id in json.loads(line)["ids"]:
                if row_id in seen:
                    twice.append(row_id)
                seen.add(row_id)
    return twice


def finish(manifest: Manifest, options: BuildOptions, journal: Journal, records: list[dict[str, Any]],
           text_info: dict[str, Any], started: float) -> dict[str, Any]:
    out = options.out
    twice = duplicate_ids(journal, records)
    if twice:  # verify would refuse the folder: nothing is published
        shown = ", ".join(twice[:5]) + (f" and {len(twice) - 5} more" if len(twice) > 5 else "")
        raise BuildError(f"{len(twice)} row id(s) would be published twice ({shown}): the same input is listed "
                         "more than once (e.g. one image in two splits); nothing was published. Fix the inputs and "
                         "build again with --overwrite")
    sidecars = _sidecars(options, journal.entries(records))  # a format's files beside its shards (sizes.json)
    journal.plan(records, [BUILD_JSON, "README.md", REJECTS, LOCAL_REJECTS, PROVENANCE, BENCHMARKS, CROISSANT,
                           *CHARTS, *sidecars])
    shards = journal.publish(records)
    for path, text in sidecars.items():
        (out / path).write_text(text, encoding="utf-8")
    (out / PROVENANCE).parent.mkdir(parents=True, exist_ok=True)
    ledger = _rejects(out, records)
    _provenance(out, journal, records)
    (out / BENCHMARKS).write_text(json.dumps([str(p) for p in manifest.benchmarks]), encoding="utf-8")
    sources = sources_table(manifest, ledger)  # once: a release's terms may be read from the Hub
    summary = _summary(manifest, options, ledger, shards, started, sources)
    summary.update(text_info)
    charts = write_charts(out, ledger, shards)
    extra = [*charts, *_croissant(options, summary, shards)]
    _write_card(options, ledger, shards, sources, text_info["describer"]["name"],
                (text_info.get("model_stage") or {}).get("checks") or {}, summary["deidentification"], charts)
    summary["published"] = ["README.md", REJECTS, *sorted([*(s["path"] for s in shards), *sidecars, *extra])]
    summary["local"] = [LOCK, LOCAL_REJECTS, PROVENANCE, BENCHMARKS]
    summary["benchmarks"] = [p.name for p in manifest.benchmarks]  # names only: the paths are local
    journal.write_last(BUILD_JSON, redact(json.dumps(summary, indent=2)) + "\n")  # whole or absent
    journal.remove()
    return summary


CROISSANT = "croissant.json"


def _croissant(options: BuildOptions, summary: dict[str, Any], shards: list[dict[str, Any]]) -> list[str]:
    """``croissant.json`` beside the card, describing the Parquet shards (none in a WebDataset-only build)."""
    if not any(s["format"] == "parquet" for s in shards):
        return []
    document = croissant(options.out.resolve().name, options.repo or options.out.resolve().name,
                         versions()["medtrinity-25m"], summary["sources"], summary["deidentification"],
                         summary["describer"]["name"], summary["rows"]["total"],
                         FORMATS["parquet"].data_files("*", "*", depth_of(s["path"] for s in shards
                                                                          if s["format"] == "parquet")))
    (options.out / CROISSANT).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [CROISSANT]


def _sidecars(options: BuildOptions, shards: list[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in options.formats:
        make = FORMATS[name].sidecars
        found.update(make(shards) if make is not None else {})
    return found


def sources_table(manifest: Manifest, ledger: Ledger) -> list[dict[str, Any]]:
    rows = []
    for spec in manifest.sources:
        count: Any = ledger.sources.get(spec.name, {})
        given = ADAPTERS[spec.format].terms(spec)  # a published release's own licence and gating
        row = {"name": spec.name, "format": spec.format, "license": given.get("license") or spec.license,
               "redistribute": spec.redistribute,
               "files": count.get("files", 0), "rows": count.get("rows", 0), "rejected": count.get("rejected", 0),
               "skipped": count.get("skipped", 0)}
        if given.get("terms"):
            row["terms"] = given["terms"]
        rows.append(row)
    return rows


def _summary(manifest: Manifest, options: BuildOptions, ledger: Ledger, shards: list[dict[str, Any]],
             started: float, sources: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = time.time() - started
    summary = ledger.summary()
    summary.update(
        manifest={"name": manifest.path.name, "sha256": manifest.sha256},
        sources=sources,
        options=leaves(options),
        shards=sorted(shards, key=lambda s: s["path"]),
        versions=versions(),
        deidentification=deidentification(),
        platform=f"{sys.platform}-{platform.machine()}",
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        seconds=round(seconds, 3),
        rows_per_second=round(ledger.rows_total / seconds, 1) if seconds > 0 else None,
        demo=options.demo,
    )
    return summary


def _write_card(options: BuildOptions, ledger: Ledger, shards: list[dict[str, Any]], sources: list[dict[str, Any]],
                describer: str, checks: dict[str, Any], deid: dict[str, Any], charts: list[str]) -> None:
    layout = next(name for name in FORMATS if name in options.formats)  # the registry's order decides
    splits: dict[str, list[str]] = {}
    for shard in shards:
        if shard["format"] == layout and shard["split"] not in splits.setdefault(shard["modality"], []):
            splits[shard["modality"]].append(shard["split"])
    inputs = card.CardInputs(
        ledger=ledger, layout=layout, splits=splits, shards=shards, sources=sources,
        describer=describer, version=versions()["medtrinity-25m"], repo=options.repo or options.out.resolve().name,
        checks=checks, deidentification=deid, charts=tuple(charts),
    )
    (options.out / "README.md").write_text(card.render(inputs), encoding="utf-8")
