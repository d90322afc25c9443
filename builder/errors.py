"""Errors of the pipeline.

A :class:`Reject` is data, not a crash: it names the input and why it cannot
become a sample, and ends as one line of ``rejects.jsonl``. A
:class:`ManifestError` stops a build before any work.
"""

from __future__ import annotations


class ManifestError(ValueError):
    """The sources manifest is invalid; the message names the key."""

    def __init__(self, key: str, reason: str, path: str = "") -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}manifest key '{key}': {reason}")
        self.key = key
        self.reason = reason
        self.path = path

    def __reduce__(self) -> tuple:
        return (ManifestError, (self.key, self.reason, self.path))


class Reject(Exception):
    """An input that cannot become a sample: which stage refused it and why."""

    def __init__(self, stage: str, reason: str, rule: str | None = None) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.rule = rule  # the named curation rule that flagged the input, if any

    def __reduce__(self) -> tuple:  # crosses process boundaries with its fields
        return (Reject, (self.stage, self.reason, self.rule))
