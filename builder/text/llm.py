"""One client for every OpenAI-compatible chat-completions server.

vLLM, SGLang, TGI, Ollama and OpenAI itself speak the same protocol. The key
comes from ``OPENAI_API_KEY`` (a placeholder when unset: local servers accept
any); it is never logged, printed or written. Failed calls and answers that
do not parse are retried with exponential backoff, then become a reject.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ..errors import Reject
from ..privacy import redact
from .prompts import ParseError

T = TypeVar("T")


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

    def describe(self) -> dict[str, Any]:
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

        problem = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            try:
                answer = self.client.chat.completions.create(
                    model=self.config.model, messages=messages, temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens)
                return parse(answer.choices[0].message.content or "")
            except ParseError as exc:
                problem = f"unusable answer: {exc}"
            except openai.APIStatusError as exc:
                problem = f"server answered {exc.status_code}"
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
        raise Reject(stage, redact(f"{self.config.model} at {self.config.base_url}: {problem} "
                            f"(after {self.config.retries + 1} tries)"))
