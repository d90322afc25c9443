"""The re-describe step (``medtri-build describe DATASET``): a finished build described again.

A finished build's rows carry everything a describer is given (the stored image,
the coarse caption, the ROIs, the knowledge ids), so the model stage can run
again on its own: with a better model, or on a GPU cluster through batch files.

- online: each row's request goes to the describer (exactly ``--llm-concurrency``
  calls in flight, answers kept in the answer cache);
- ``--export-batch FILE``: the requests as an OpenAI Batch API JSONL file
  (``custom_id`` = row id, ``method``, ``url``, ``body`` = the chat completion with
  the image as a data URL), which ``vllm run-batch`` and OpenAI's Batch API take;
- ``--import-batch RESULTS``: the results file they give back, merged.

The new Parquet shards, reject logs, card and ``build.json`` (shard checksums, the
describer, what was described) are written beside the old ones and put in place
together, ``build.json`` last (:mod:`builder.dataset.staging`): a describe killed
half-way leaves the folder as it was, or, killed while renaming, is finished by
the next ``describe``. The folder is verified before the command says it is done. A row whose
answer failed or is missing keeps its previous description and gets a reject
line saying so.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from builder.checks import facts_of
from builder.dataset import staging
from builder.errors import Reject
from builder.layout import BUILD_JSON, read_build_json, sha256_file
from builder.llm import ParseError
from builder.pipeline.body import body_of
from builder.pipeline.card import checks_note
from builder.pipeline.data import DescribeRequest, Roi
from builder.pipeline.roi import convention
from builder.pipeline.text.backends import OpenAIDescriber
from builder.pipeline.text.measure import measure_in
from builder.pipeline.text.options import TextOptions
from builder.pipeline.text.prompts import parse_attributes
from builder.pipeline.text.styles import STYLES
from builder.pipeline.text.verdicts import Verdict, Verdicts
from medtrinity_25m import ARROW_SCHEMA

__all__ = ["DescribeError", "DescribeJob", "describe_dataset", "read_results", "request_of", "rewrite"]


log = logging.getLogger(__name__)


class DescribeError(RuntimeError):
    """A folder that cannot be described again (not a finished build, WebDataset shards, a bad results file)."""


@dataclass(frozen=True)
class DescribeJob:
    out: Path
    text: TextOptions
    export_batch: Path | None = None
    import_batch: Path | None = None


def request_of(row: dict[str, Any], knowledge: tuple[str, ...] = ()) -> DescribeRequest:
    """What the describer is given for one stored row: as the build gave it, from the row alone."""
    pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
    mask = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"]))) if row.get("mask") else None
    rois = [Roi(bbox=tuple(r["bbox"]), label=r["label"], area_ratio=r["area_ratio"], position=r["position"],
                origin=r["origin"], score=r["score"], pixels=int(np.count_nonzero(mask == i + 1)) if mask is not None
                else 0) for i, r in enumerate(row["rois"] or [])]
    spacing = tuple(row["pixel_spacing"]) if row.get("pixel_spacing") else None
    stats = measure_in(body_of(pixels, row["modality"], None if mask is None else mask != 0), pixels, mask, rois)
    return DescribeRequest(
        id=row["id"], modality=row["modality"], organ=row["organ"] or "unspecified", disease=row["disease"] or "",
        plane=row["plane"], slice_index=row["slice_index"], coarse_caption=row["coarse_caption"] or "",
        rois=rois, stats=stats, view=convention(row["modality"], row["plane"]),
        image_png=row["image"]["bytes"], spacing=spacing, sequence=(row.get("details") or {}).get("sequence"),
        finding_shown=None, knowledge=knowledge)


def _shards(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = read_build_json(out)
    if doc is None or "shards" not in doc:
        raise DescribeError(f"{out}: not a finished build (no readable {BUILD_JSON})")
    if any(s["format"] != "parquet" for s in doc["shards"]):
        raise DescribeError(f"{out}: describe rewrites Parquet shards; this build has WebDataset shards too "
                            "(build it again with --describer instead)")
    return doc, doc["shards"]


def _rows(out: Path, shard: dict[str, Any]) -> list[dict[str, Any]]:
    return pq.read_table(out / shard["path"]).to_pylist()


def _describable(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows whose text a describer wrote (a release's own caption, with no attributes, is kept as it is)."""
    return (row for row in rows if row["attributes"] is not None)


def _describer(text: TextOptions) -> Any:
    from builder.pipeline.text.registry import DESCRIBERS

    try:
        return DESCRIBERS[text.describer].make(text)
    except (KeyError, ValueError, Reject) as exc:
        raise DescribeError(f"describer {text.describer!r}: {exc}") from None


def _knowledge(text: TextOptions) -> Any:
    if not text.kb:
        return None
    from builder.pipeline.knowledge import KnowledgeBase, Retriever

    return Retriever(KnowledgeBase.load(Path(text.kb)), k=text.k)


def _texts(retriever: Any, row: dict[str, Any]) -> tuple[str, ...]:
    if retriever is None:
        return ()
    hits = retriever.lookup([row["coarse_caption"] or ""])[0]
    row["knowledge"] = [h.id for h in hits]
    return tuple(h.text for h in hits)


def export_batch(job: DescribeJob) -> dict[str, Any]:
    """Write one Batch API request line per row; nothing in the folder changes."""
    _, shards = _shards(job.out)
    describer = _describer(job.text)
    if not isinstance(describer, OpenAIDescriber):  # a chat-completions client: its requests are Batch API lines
        raise DescribeError("--export-batch needs a chat-completions describer (--describer openai)")
    retriever, count = _knowledge(job.text), 0
    with open(job.export_batch, "w", encoding="utf-8") as fh:  # type: ignore[arg-type]
        for shard in shards:
            for row in _describable(_rows(job.out, shard)):
                request = request_of(row, _texts(retriever, row))
                body = {"model": describer.config.model, "messages": describer.messages(request),
                        "temperature": describer.config.temperature, "max_tokens": describer.config.max_tokens,
                        "response_format": {"type": "json_schema", "json_schema": {
                            "name": "answer", "schema": describer.schema(), "strict": True}}}
                fh.write(json.dumps({"custom_id": row["id"], "method": "POST", "url": "/v1/chat/completions",
                                     "body": body}) + "\n")
                count += 1
    return {"requests": count, "file": str(job.export_batch)}


def read_results(path: Path, keys: tuple[str, ...]) -> dict[str, dict[str, str] | Reject]:
    """Each row's answer, or the reason it has none, from an OpenAI Batch / ``vllm run-batch`` results file."""
    found: dict[str, dict[str, str] | Reject] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            row_id = entry["custom_id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DescribeError(f"{path.name}:{number}: not a batch result line") from None
        response = entry.get("response") or {}
        if entry.get("error") or response.get("status_code") != 200:
            why = entry.get("error") or f"status {response.get('status_code')}"
            found[row_id] = Reject("describe", f"the batch result failed ({json.dumps(why)[:200]})")
            continue
        try:
            content = response["body"]["choices"][0]["message"]["content"] or ""
            found[row_id] = parse_attributes(content, keys)
        except (KeyError, IndexError, TypeError, ParseError) as exc:
            found[row_id] = Reject("describe", f"the batch result has no usable answer ({exc})")
    return found


def _online(job: DescribeJob, shards: list[dict[str, Any]], describer: Any,
            verdicts: Verdicts) -> dict[str, Verdict | Reject]:
    """Every row described through the model stage's scheduler, with the answer cache; each answer checked (and
    asked again) as the build's text stage does."""
    from builder.pipeline.text.answers import AnswerCache, ask
    from builder.pipeline.text.scheduler import Scheduler, one_try

    concurrency = job.text.concurrency
    cache = AnswerCache(describer.info()) if job.text.cache_answers else None
    scheduler, retriever = Scheduler(one_try(describer), concurrency), _knowledge(job.text)
    answers: dict[str, Verdict | Reject] = {}

    def again(request: Any, done: Any) -> None:
        ask(request, done, scheduler.submit, cache)

    try:
        for shard in shards:
            for row in _describable(_rows(job.out, shard)):
                request = request_of(row, _texts(retriever, row))
                done = verdicts.judge(request, facts_of(row), partial(answers.__setitem__, row["id"]), again)
                ask(request, done, scheduler.submit, cache)
    finally:
        scheduler.close()
        if cache is not None:
            cache.close()
    return answers


def describe_dataset(job: DescribeJob) -> dict[str, Any]:
    """Describe the build again (or write its batch file); return what changed."""
    recovered = staging.recover(job.out) if job.out.is_dir() else None
    if recovered:
        log.warning("%s: %s", job.out, recovered)
    if job.export_batch is not None:
        return export_batch(job)
    doc, shards = _shards(job.out)
    describer = _describer(job.text)
    keys = STYLES[job.text.style].keys
    verdicts = Verdicts(job.text.on_contradiction)
    answers = read_results(job.import_batch, keys) if job.import_batch else _online(job, shards, describer, verdicts)
    source = f"batch results {job.import_batch.name}" if job.import_batch else "online"
    return rewrite(job.out, doc, answers, describer, source, verdicts)


def _merge(rows: list[dict[str, Any]], answers: Mapping[str, dict[str, str] | Verdict | Reject], name: str,
           lines: list[dict[str, Any]], verdicts: Verdicts) -> int:
    """Put each row's new answer in, checked (a batch result is checked here, without a retry); a row without one,
    or whose answer is refused for its contradictions, keeps its text and gets a reject line. Rows described."""
    described = 0
    for row in _describable(rows):
        answer = answers.get(row["id"]) or Reject("describe", "no answer for this row")
        try:
            if isinstance(answer, dict):
                answer = verdicts.verdict(answer, facts_of(row))
            if isinstance(answer, Reject):
                raise answer
            answer.store(row, name)
            described += 1
        except Reject as exc:
            lines.append({"file": row["source_file"], "source": row["source"], "stage": exc.stage,
                          "reason": f"{exc.reason}: the row keeps its previous description", "id": row["id"]})
    return described


def rewrite(out: Path, doc: dict[str, Any], answers: Mapping[str, dict[str, str] | Verdict | Reject], describer: Any,
            source: str, verdicts: Verdicts) -> dict[str, Any]:
    """The shards with the new text, the rejects, the card and build.json, staged then put in place; verified."""
    import pyarrow as pa

    from builder.dataset.verify import verify

    lines: list[dict[str, Any]] = []
    described = 0
    for shard in doc["shards"]:
        rows = _rows(out, shard)
        described += _merge(rows, answers, describer.name, lines, verdicts)
        table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
        staged = staging.stage(out / shard["path"], partial(pq.write_table, table))
        shard["sha256"], shard["bytes"] = sha256_file(staged), staged.stat().st_size
    added = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    for rejects in (out / "rejects.jsonl", out / ".private" / "rejects.jsonl"):
        if rejects.is_file() and added:
            staging.stage_copy(rejects, added)
    old = (doc.get("describer") or {}).get("name", "")
    info = describer.info()
    report = describer.report()
    doc["describer"] = info
    doc["described_again"] = {"source": source, "described": described, "kept_previous": len(lines), **report,
                              "checks": verdicts.report()}
    counts = doc.setdefault("rejects", {})
    counts["other"] = counts.get("other", 0) + len(lines)
    counts["total"] = counts.get("total", 0) + len(lines)
    by_stage = counts.setdefault("by_stage", {})
    for line in lines:
        by_stage[line["stage"]] = by_stage.get(line["stage"], 0) + 1
    card = out / "README.md"
    if card.is_file() and old:
        text = re.sub(r"by the `[^`]*` describer\.[^\n]*?(?= *\n|$)",
                      lambda _: f"by the `{info['name']}` describer." + checks_note(verdicts.report()),
                      card.read_text(encoding="utf-8"), count=1)
        staging.stage(card, lambda path: path.write_text(text, encoding="utf-8"))
    staging.stage(out / BUILD_JSON, lambda path: path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8"))
    staging.commit(out)  # build.json last: a describe killed from here on is finished by the next one
    problems = verify(out)
    if problems:
        raise DescribeError("the described folder does not verify: " + "; ".join(str(p) for p in problems[:5]))
    return doc["described_again"]
