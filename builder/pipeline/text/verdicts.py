"""What is done with a model answer that contradicts what was measured (``--on-contradiction``).

Every model answer is checked against its row's facts (:mod:`builder.checks`). The policy:

- ``keep``: store it as it came; the row's ``checks`` say what contradicted (action ``kept``);
- ``flag``: store it, action ``flagged`` (filter on ``checks.action``);
- ``retry`` (default): ask once more, naming each contradiction in the prompt; a clean second answer is stored
  (action ``retried``), one that still contradicts is stored flagged;
- ``reject``: the same retry; one that still contradicts is a reject line of stage ``text``, not a row.

Answers without contradictions are stored with action null. The build's text stage, ``medtri-build describe``
and imported batch results (where no retry can be asked: ``retry`` flags, ``reject`` rejects) all go through
:class:`Verdicts`, which counts what it decided for build.json and the card.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from builder.checks import Checks, Facts, check
from builder.errors import Reject
from builder.pipeline.text.describers import set_text

__all__ = ["OnContradiction", "Verdict", "Verdicts"]

OnContradiction = Literal["keep", "flag", "retry", "reject"]
Answer = "dict[str, str] | Reject"
Submit = Callable[[Any, Callable[[Any], None]], None]


@dataclass(frozen=True)
class Verdict:
    """A model's answer with what was checked, and the action taken (None: nothing contradicted)."""

    answer: dict[str, str]
    checks: Checks
    action: str | None

    def store(self, row: dict[str, Any], describer: str) -> None:
        """Put the answer and its checks into ``row``; a :class:`Reject` of stage ``text`` when it was refused."""
        if self.action == "rejected":
            raise Reject("text", "the model's answer contradicts what was measured, after a retry: "
                                 + "; ".join(self.checks.contradictions))
        set_text(row, self.answer, describer, from_model=True)
        row["checks"] = self.checks.as_row(self.action)


def correction(checks: Checks) -> str:
    """What a retry's prompt says of the first answer."""
    listed = "\n".join(f"- {c}" for c in checks.contradictions)
    return ("Your previous answer contradicted what was measured in this image:\n" + listed +
            "\nAnswer again, consistent with the modality, organ, regions, positions and sizes given above.")


class Verdicts:
    def __init__(self, policy: OnContradiction) -> None:
        self.policy = policy
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()

    def judge(self, request: Any, facts: Facts, done: Callable[[Any], None], ask_again: Submit | None) -> \
            Callable[[Any], None]:
        """A callback for the first answer to ``request``: checks it, asks again once through ``ask_again``
        when the policy says so (None: it cannot, as for batch results), and gives ``done`` a :class:`Verdict`
        or the :class:`Reject` of a failed call."""

        def first(answer: dict[str, str] | Reject) -> None:
            if isinstance(answer, Reject):
                return done(answer)
            checks = self._check(answer, facts, first=True)
            if not checks.contradictions:
                return done(Verdict(answer, checks, None))
            if self.policy in ("keep", "flag") or ask_again is None:
                return done(self._final(answer, checks))
            self._count("retried")
            again = dataclasses.replace(request, correction=correction(checks))
            ask_again(again, second)

        def second(answer: dict[str, str] | Reject) -> None:
            if isinstance(answer, Reject):
                return done(answer)
            checks = self._check(answer, facts, first=False)
            done(Verdict(answer, checks, "retried") if not checks.contradictions else self._final(answer, checks))

        return first

    def verdict(self, answer: dict[str, str], facts: Facts) -> Verdict:
        """An answer that cannot be asked again (imported batch results): checked and decided at once."""
        result: list[Any] = []
        self.judge(None, facts, result.append, None)(answer)
        return result[0]

    def _check(self, answer: Mapping[str, str], facts: Facts, first: bool) -> Checks:
        checks = check(answer, facts)
        with self.lock:
            if first:
                self.counts["checked"] += 1
                if checks.contradictions:
                    self.counts["contradicted"] += 1
                    self.rules.update(set(checks.rules))
            elif checks.contradictions:
                self.counts["contradicted_after_retry"] += 1
        return checks

    def _final(self, answer: dict[str, str], checks: Checks) -> Verdict:
        action = {"keep": "kept", "reject": "rejected"}.get(self.policy, "flagged")
        self._count(action)
        return Verdict(answer, checks, action)

    def _count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    def report(self) -> dict[str, Any]:
        """build.json's ``checks``: answers checked, contradicted (by rule), retried, and what was done."""
        if not self.counts:
            return {}
        names = ("checked", "contradicted", "retried", "contradicted_after_retry", "kept", "flagged", "rejected")
        return {"policy": self.policy, **{n: self.counts.get(n, 0) for n in names},
                "by_rule": dict(sorted(self.rules.items()))}
