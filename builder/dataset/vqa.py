"""Question-answer pairs written by a model from each row's description (``export llava --vqa llm``).

MedTrinity-25M's authors turned captions into VQA with an LLM (GPT-4o batch calls,
a LLaMA-3 reformat script). Here the configured OpenAI-compatible model gets the
description and is asked for ``pairs`` question-answer pairs grounded in it, as
one JSON object (the prompt below). An answer that is not that JSON after the
retries is a line of ``vqa_rejects.jsonl`` for that row; the row keeps its
description record.
"""

from __future__ import annotations

from typing import Any

from builder.llm import ChatClient, LLMConfig, ParseError, json_object

__all__ = ["PROMPT", "VqaWriter", "parse_pairs"]

PROMPT = """\
You turn a medical image's description into training questions. Using only facts stated in the description below,
write {n} question-answer pairs about the image: its modality and view, the organs shown, the regions of interest
(where they are and what they look like), their colour and texture, and how they relate to the rest of the image.
Do not ask about anything the description does not state. Answer with one JSON object and nothing else:
{{"pairs": [{{"question": "...", "answer": "..."}}, ...]}}

Description: {description}"""


def parse_pairs(text: str, n: int) -> list[tuple[str, str]]:
    """The ``n`` (question, answer) pairs of a model's answer; :class:`ParseError` otherwise."""
    pairs = json_object(text).get("pairs")
    if not isinstance(pairs, list) or len(pairs) < n:
        raise ParseError(f"answer does not hold {n} pairs")
    found = []
    for pair in pairs[:n]:
        question = pair.get("question") if isinstance(pair, dict) else None
        answer = pair.get("answer") if isinstance(pair, dict) else None
        if not (isinstance(question, str) and question.strip() and isinstance(answer, str) and answer.strip()):
            raise ParseError("a pair lacks a question or an answer")
        found.append((question.strip(), answer.strip()))
    return found


class VqaWriter:
    """Asks the model for each row's pairs, ``concurrency`` at a time."""

    def __init__(self, config: LLMConfig, pairs: int = 3) -> None:
        self.client, self.pairs, self.config = ChatClient(config), pairs, config

    def ask(self, description: str) -> list[tuple[str, str]]:
        prompt = PROMPT.format(n=self.pairs, description=description)
        return self.client.ask([{"role": "user", "content": prompt}], lambda t: parse_pairs(t, self.pairs),
                               stage="describe")

    def many(self, descriptions: list[tuple[str, str]]) -> dict[str, Any]:
        """``{row id: pairs or the Reject}`` for ``(row id, description)`` items."""
        from concurrent.futures import ThreadPoolExecutor

        from builder.errors import Reject

        def one(item: tuple[str, str]) -> tuple[str, Any]:
            try:
                return item[0], self.ask(item[1])
            except Reject as exc:
                return item[0], exc

        with ThreadPoolExecutor(max(1, self.config.concurrency)) as pool:
            return dict(pool.map(one, descriptions))
