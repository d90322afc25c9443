"""Quality validation: descriptions scored against human references, 0-2 per attribute.

As MedTrinity-25M did with GPT-4V, each description that has a reference (a
MedPix image caption and case findings, or a source's ``reference`` text) gets
0, 1 or 2 on each of the five attributes, 10 at most. Two judges:

- ``rules`` (offline, deterministic): for each attribute, the terms of one
  vocabulary found in the description are matched against those in the
  reference: 2 when they agree and nothing contradicts, 1 when nothing can be
  checked or they partly agree, 0 when they contradict (another modality, the
  other side, hyper- where the reference says hypo-).

  ============================  =========================================
  attribute                     vocabulary
  ============================  =========================================
  modality                      modality names (CT, MRI, radiograph, ...)
  organ_detection               organs and body regions
  roi_analysis                  laterality and plane
  texture                       lesion, intensity and texture terms
  region_relationship           relations (mass effect, adjacent, ...)
  ============================  =========================================

- ``openai``: an LLM judge through any OpenAI-compatible server, asked for the
  same five scores as JSON.

Beside the score, every described row (with a reference or not) is checked
against what the pipeline measured of it (:mod:`builder.checks`): the
contradiction rate is the share of checked rows whose text contradicts its own
modality, organ, plane, regions, positions, count, areas or sizes.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from builder.checks import check, facts_of
from builder.dataset.shards import iter_rows
from builder.errors import Reject
from builder.llm import ChatClient, LLMConfig, ParseError
from builder.vocabulary import OPPOSITE, terms
from medtrinity_25m import ATTRIBUTE_KEYS

REFERENCE_FIELDS = ("caption", "findings")
COLUMNS = ["id", "modality", "organ", "caption", "attributes", "reference", "rois", "plane", "details",
           "pixel_spacing"]

def agreement(reference: set[str], description: set[str], exclusive: bool) -> int | None:
    """2 agree, 1 mixed or not stated by the description, 0 contradict; None: the reference states nothing to
    check the attribute against (unverifiable, reported apart and left out of the score).

    ``exclusive``: the values are alternatives (a modality, a plane), so a value
    of the description that the reference lacks contradicts it; otherwise only
    opposites (hyper/hypo, left/right) do.
    """
    if not reference:
        return None
    if not description:
        return 1
    shared = reference & description
    if exclusive:
        conflict = description - reference
    else:
        conflict = {t for t in description if OPPOSITE.get(t) in reference and t not in reference}
    if shared and not conflict:
        return 2
    if conflict and not shared:
        return 0
    return 1


class Judge(Protocol):
    name: str

    def score(self, description: dict[str, str], reference: str) -> dict[str, int | None]: ...


def _both(first: int | None, second: int | None) -> int | None:
    """Two checks of one attribute: a contradiction in either is 0, else their mean; the unverifiable one is left
    out."""
    known = [v for v in (first, second) if v is not None]
    if not known:
        return None
    return 0 if 0 in known else round(sum(known) / len(known) + 0.01)


@dataclass(frozen=True)
class RulesJudge:
    name: str = "rules"

    def score(self, description: dict[str, str], reference: str) -> dict[str, int | None]:
        whole = " ".join(description.values())
        side_and_plane = description.get("roi_analysis", "") + " " + description.get("modality", "")
        ref_sides, ref_planes = terms(reference, "sides"), terms(reference, "planes")
        sides = agreement(ref_sides, terms(side_and_plane, "sides"), exclusive=False)
        planes = agreement(ref_planes, terms(side_and_plane, "planes"), exclusive=True)
        return {
            "modality": agreement(terms(reference, "modality"), terms(description.get("modality") or whole,
                                                                      "modality"), exclusive=True),
            "organ_detection": agreement(terms(reference, "organs"),
                                         terms(description.get("organ_detection", ""), "organs"), exclusive=False),
            "roi_analysis": _both(sides, planes),
            "texture": agreement(terms(reference, "texture"), terms(description.get("texture", ""), "texture"),
                                 exclusive=False),
            "region_relationship": agreement(terms(reference, "relations"),
                                             terms(description.get("region_relationship", ""), "relations"),
                                             exclusive=False),
        }


JUDGE_PROMPT = """\
Score a generated description of a medical image against the human reference, as MedTrinity-25M's
authors did: 0, 1 or 2 points for each attribute (2 = consistent with the reference, 1 = partly,
0 = contradicts it or misses what the reference states), or null where the reference says nothing
that the attribute could be checked against.

Reference:
{reference}

Generated description, by attribute:
{description}

Answer with one JSON object of integers and nothing else:
{{"modality": 0-2 or null, "organ_detection": 0-2 or null, "roi_analysis": 0-2 or null, "texture": 0-2 or null,
 "region_relationship": 0-2 or null}}
"""


def parse_scores(text: str) -> dict[str, int | None]:
    match = re.search(r"\{.*\}", text, re.S)
    try:
        value = json.loads(match.group(0) if match else text)
        return {k: None if value[k] is None else max(0, min(2, int(value[k]))) for k in ATTRIBUTE_KEYS}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ParseError(f"scores are not the JSON asked for: {text[:120]!r}") from None


class OpenAIJudge:
    name = "openai"

    def __init__(self, config: LLMConfig) -> None:
        self.client = ChatClient(config)

    def score(self, description: dict[str, str], reference: str) -> dict[str, int | None]:
        listed = "\n".join(f"- {k}: {description.get(k, '')}" for k in ATTRIBUTE_KEYS)
        prompt = JUDGE_PROMPT.format(reference=reference, description=listed)
        return self.client.ask([{"role": "user", "content": prompt}], parse_scores, stage="validate")


def reference_text(row: dict[str, Any]) -> str:
    reference = row.get("reference") or {}
    return "\n".join(str(reference[k]) for k in REFERENCE_FIELDS if reference.get(k))


def row_total(scores: dict[str, int | None]) -> float | None:
    """A row's score out of 10 over the attributes that could be checked (None: none could)."""
    known = [v for v in scores.values() if v is not None]
    return round(2 * len(ATTRIBUTE_KEYS) * sum(known) / (2 * len(known)), 3) if known else None


def validate(out: Path, judge: Judge, worst: int = 5) -> dict[str, Any]:
    """Mean scores per attribute and per modality over what was checkable, how many attributes could not be checked
    (count and share), the number scored, the worst examples."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    scored: list[tuple[float, dict[str, Any]]] = []
    skipped = failed = 0
    contradictions = Contradictions()
    for _, row in iter_rows(out, COLUMNS, batch_size=512):
        contradictions.add(row)
        reference = reference_text(row)
        if not reference or not row.get("attributes"):
            skipped += 1
            continue
        try:
            scores = judge.score({k: v or "" for k, v in (row["attributes"] or {}).items()}, reference)
        except Reject:
            failed += 1
            continue
        total = row_total(scores)
        for group in (row["modality"], "all"):
            _add(sums[group], scores, total)
        if total is not None:
            scored.append((total, {"id": row["id"], "modality": row["modality"], "total": total, "scores": scores,
                                   "reference": reference[:300], "caption": (row["caption"] or "")[:300]}))
    means = {group: _means(v) for group, v in sums.items()}
    overall = means.pop("all", {"n": 0, "unverifiable": {}})
    return {"judge": judge.name, "scored": overall["n"], "skipped_without_reference": skipped,
            "failed": failed, "attributes": {k: overall.get(k) for k in ATTRIBUTE_KEYS},
            "unverifiable": overall["unverifiable"],
            "total": overall.get("total"), "max_total": 2 * len(ATTRIBUTE_KEYS),
            "by_modality": dict(sorted(means.items())), "contradictions": contradictions.report(),
            "worst": [example for _, example in sorted(scored, key=lambda s: s[0])[:worst]]}


class Contradictions:
    """Described rows checked against what was measured of them: how many, how many contradict, by rule."""

    def __init__(self) -> None:
        self.checked = self.contradicted = 0
        self.rules: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        if not row.get("attributes"):
            return
        found = check(row["attributes"], facts_of(row))
        if not found.checked:
            return
        self.checked += 1
        if found.contradictions:
            self.contradicted += 1
            self.rules.update(set(found.rules))
            if len(self.examples) < 5:
                self.examples.append({"id": row["id"], "contradictions": list(found.contradictions)})

    def report(self) -> dict[str, Any]:
        rate = round(self.contradicted / self.checked, 4) if self.checked else None
        return {"checked": self.checked, "contradicted": self.contradicted, "rate": rate,
                "by_rule": dict(sorted(self.rules.items())), "examples": self.examples}


def _add(sums: dict[str, float], scores: dict[str, int | None], total: float | None) -> None:
    sums["n"] += 1
    if total is not None:
        sums["total"] += total
        sums["n_total"] += 1
    for key, value in scores.items():
        if value is None:
            sums[f"{key}:unverifiable"] += 1
        else:
            sums[key] += value
            sums[f"{key}:n"] += 1


def _means(sums: dict[str, float]) -> dict[str, Any]:
    n = int(sums["n"])
    means: dict[str, Any] = {"n": n}
    for key in ATTRIBUTE_KEYS:
        means[key] = round(sums[key] / sums[f"{key}:n"], 3) if sums[f"{key}:n"] else None
    means["total"] = round(sums["total"] / sums["n_total"], 3) if sums["n_total"] else None
    means["unverifiable"] = {key: {"count": int(sums[f"{key}:unverifiable"]),
                                   "share": round(sums[f"{key}:unverifiable"] / n, 3) if n else 0.0}
                             for key in ATTRIBUTE_KEYS}
    return means


def markdown(report: dict[str, Any]) -> str:
    head = ["config", "n", *ATTRIBUTE_KEYS, "total /10"]
    lines = [f"Judge: {report['judge']}; {report['scored']} descriptions scored, "
             f"{report['skipped_without_reference']} without a reference, {report['failed']} failed.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = list(report["by_modality"].items()) + [("all", {"n": report["scored"], **report["attributes"],
                                                            "total": report["total"]})]
    for name, values in groups:
        cells = [name, str(values["n"])] + [f"{values[k]:.2f}" if values.get(k) is not None else "-"
                                            for k in (*ATTRIBUTE_KEYS, "total")]
        lines.append("| " + " | ".join(cells) + " |")
    found = report.get("contradictions") or {}
    if found.get("checked"):
        rules = ", ".join(f"{rule} {n}" for rule, n in found["by_rule"].items())
        lines += ["", f"Contradiction rate: {100 * found['rate']:.1f}% ({found['contradicted']} of {found['checked']} "
                      f"described rows contradict what was measured of them{f': {rules}' if rules else ''})."]
    unverifiable = report.get("unverifiable") or {}
    if any(v["count"] for v in unverifiable.values()):
        lines += ["", "Not checkable (the reference states nothing to check them against; left out of the "
                      "scores above):", ""]
        lines += [f"- {key}: {v['count']} ({100 * v['share']:.0f}%)" for key, v in unverifiable.items()]
    if report["worst"]:
        lines += ["", "Lowest scores:", ""]
        lines += [f"- `{w['id']}` ({w['modality']}) {w['total']}/10 {w['scores']}" for w in report["worst"]]
    return "\n".join(lines)
