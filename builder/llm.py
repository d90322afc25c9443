"""One client for every OpenAI-compatible chat-completions server.

vLLM, SGLang, TGI, Ollama and OpenAI itself speak the same protocol. The key
comes from ``OPENAI_API_KEY`` (a placeholder when unset: local servers accept
any); it is never logged, printed or written. Failed calls and answers that
do not parse are retried with exponential backoff, then become a reject.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from builder.errors import Reject
from builder.privacy import redact

T = TypeVar("T")


class ParseError(ValueError):
    """A model answer that is not the JSON object asked for."""


_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


def json_object(text: str) -> dict[str, Any]:
    """The JSON object of a model's answer, fenced (```json ... ```) or bare; :class:`ParseError` otherwise."""
    match = _FENCE.search(text)
    body = match.group(1) if match else text[text.find("{"): text.rfind("}") + 1]
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"answer is not JSON ({exc.msg}): {text[:120]!r}") from None
    if not isinstance(value, dict):
        raise ParseError("answer is not a JSON object")
    return value


class TryAgain(Exception):
    """One failed try; ``problem`` says why."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def with_retries(attempt: Callable[[], T], tries: int, backoff: float = 0.0) -> T:
    """``attempt()`` until it returns, at most ``tries`` times, sleeping ``backoff`` doubled between tries.

    An attempt that raises :class:`TryAgain` is tried again; after the last, the
    last problem is raised as ``TryAgain`` for the caller to turn into a reject.
    """
    problem = ""
    for number in range(max(1, tries)):
        if number and backoff:
            time.sleep(backoff * 2 ** (number - 1))
        try:
            return attempt()
        except TryAgain as exc:
            problem = exc.problem
    raise TryAgain(problem)


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    timeout: float = 120.0
    retries: int = 3  # further tries after the first
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    concurrency: int = 8  # requests in flight at once
    temperature: float = 0.2
    max_tokens: int = 1024

    def info(self) -> dict[str, Any]:
        """What ``build.json`` records (no key)."""
        return {"base_url": self.base_url, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}


class ChatClient:
    def __init__(self, config: LLMConfig) -> None:
        try:
            from openai import OpenAI
        except ImportError:
            raise Reject("describe", "the openai describer needs: pip install 'medtrinity-25m[llm]'") from None
        self.config = config
        self.client = OpenAI(base_url=config.base_url, api_key=os.environ.get("OPENAI_API_KEY") or "unused",
                             timeout=config.timeout, max_retries=0)

    def ask(self, messages: list[dict[str, Any]], parse: Callable[[str], T], stage: str = "describe") -> T:
        """The parsed answer to ``messages``; a :class:`Reject` after the last failed try."""
        import openai

        def attempt() -> T:
            try:
                answer = self.client.chat.completions.create(
                    model=self.config.model, messages=messages,  # type: ignore[arg-type]
                    temperature=self.config.temperature, max_tokens=self.config.max_tokens)
                return parse(answer.choices[0].message.content or "")
            except ParseError as exc:
                raise TryAgain(f"unusable answer: {exc}") from None
            except openai.APIStatusError as exc:
                raise TryAgain(f"server answered {exc.status_code}") from None
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                raise TryAgain(f"{type(exc).__name__}: {exc}") from None

        try:
            return with_retries(attempt, self.config.retries + 1, self.config.backoff)
        except TryAgain as exc:
            raise Reject(stage, redact(f"{self.config.model} at {self.config.base_url}: {exc.problem} "
                                       f"(after {self.config.retries + 1} tries)")) from None
