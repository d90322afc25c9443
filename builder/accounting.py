"""Accounting: every input ends as rows or as a line of ``rejects.jsonl``.

:class:`Ledger` counts files and rows as they stream past (a few counters, never
the rows themselves) and writes the reject lines. Its invariant,
``files.seen == files.accepted + files.rejected``, is what ``build.json`` reports.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REJECTS = "rejects.jsonl"


def _line(file: str, source: str, stage: str, reason: str, extra: dict[str, Any]) -> dict[str, Any]:
    line = {"file": file, "source": source, "stage": stage, "reason": reason}
    line.update({k: v for k, v in extra.items() if v is not None})
    return line


@dataclass
class SourceCount:
    files: int = 0
    rejected: int = 0
    rows: int = 0


@dataclass
class Ledger:
    out: Path
    files_seen: int = 0
    files_accepted: int = 0
    files_rejected: int = 0
    by_modality: Counter = field(default_factory=Counter)
    by_split: Counter = field(default_factory=Counter)
    by_config_split: Counter = field(default_factory=Counter)
    by_organ: Counter = field(default_factory=Counter)
    by_disease: Counter = field(default_factory=Counter)
    by_stage: Counter = field(default_factory=Counter)
    roi_origins: Counter = field(default_factory=Counter)
    sources: dict[str, SourceCount] = field(default_factory=dict)
    other_rejects: int = 0
    _log: TextIO | None = None

    def open(self) -> "Ledger":
        self._log = open(self.out / REJECTS, "a", encoding="utf-8")
        return self

    def close(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def _line(self, record: dict[str, Any]) -> None:
        if self._log is None:
            raise RuntimeError("Ledger.open() must be called before writing reject lines")
        self._log.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._log.flush()
        self.by_stage[record["stage"]] += 1

    def _source(self, name: str) -> SourceCount:
        return self.sources.setdefault(name, SourceCount())

    def reject_file(self, source: str, file: str, stage: str, reason: str, **extra: Any) -> None:
        """An input file that gives no sample (``extra``: ``id``, ``rule`` when known)."""
        self.files_seen += 1
        self.files_rejected += 1
        self._source(source).files += 1
        self._source(source).rejected += 1
        self._line(_line(file, source, stage, reason, extra))

    def reject_other(self, source: str, file: str, stage: str, reason: str, **extra: Any) -> None:
        """A side-table row, a mask, or one row of an accepted file that could not be used."""
        self.other_rejects += 1
        self._line(_line(file, source, stage, reason, extra))

    def accept_file(self, source: str, rows: list[dict[str, Any]], split: str) -> None:
        self.files_seen += 1
        self.files_accepted += 1
        count = self._source(source)
        count.files += 1
        count.rows += len(rows)
        for row in rows:
            self.by_modality[row["modality"]] += 1
            self.by_split[split] += 1
            self.by_config_split[(row["modality"], split)] += 1
            self.by_organ[row["organ"]] += 1
            self.by_disease[row["disease"] or "(none)"] += 1
            self.roi_origins.update(roi["origin"] for roi in row["rois"])

    @property
    def rows_total(self) -> int:
        return sum(self.by_modality.values())

    def summary(self) -> dict[str, Any]:
        return {
            "files": {"seen": self.files_seen, "accepted": self.files_accepted, "rejected": self.files_rejected},
            "rows": {
                "total": self.rows_total,
                "by_modality": dict(sorted(self.by_modality.items())),
                "by_split": dict(sorted(self.by_split.items())),
            },
            "rejects": {
                "total": self.files_rejected + self.other_rejects,
                "files": self.files_rejected,
                "other": self.other_rejects,
                "by_stage": dict(sorted(self.by_stage.items())),
            },
            "rois": dict(sorted(self.roi_origins.items())),
        }
