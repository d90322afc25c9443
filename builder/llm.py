"""One client for every OpenAI-compatible chat-completions server.

vLLM, SGLang, TGI, Ollama and OpenAI itself speak the same protocol. The key
comes from ``OPENAI_API_KEY`` (a placeholder when unset: local servers accept
any); it is never logged, printed or written. Failed calls and answers that
do not parse are retried with exponential backoff, then become a reject.
Calls go over keep-alive connections of the standard library
(:mod:`builder.llm_http`): no SDK, and a fifth of its CPU per call.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from builder.errors import Reject, Stage, StageName
from builder.options import option
from builder.privacy import redact

if TYPE_CHECKING:  # the HTTP client (http.client, ssl, urllib: 60 ms) loads with the first client, not every build
    from builder.llm_http import Reply

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
    """One failed try; ``problem`` says why, ``retry_after`` how long the server asked to wait (seconds)."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem, self.retry_after = problem, retry_after


def with_retries(attempt: Callable[[], T], tries: int, backoff: float = 0.0) -> T:
    """``attempt()`` until it returns, at most ``tries`` times, sleeping ``backoff`` doubled between tries.

    An attempt that raises :class:`TryAgain` is tried again; after the last, the
    last problem is raised as ``TryAgain`` for the caller to turn into a reject.
    """
    problem = ""
    wait: float | None = None
    for number in range(max(1, tries)):
        if number:
            time.sleep(wait if wait is not None else backoff * 2 ** (number - 1))
        try:
            return attempt()
        except TryAgain as exc:
            problem, wait = exc.problem, exc.retry_after
    raise TryAgain(problem)


@dataclass(frozen=True)
class LLMConfig:
    """An OpenAI-compatible server and how it is asked (the ``openai`` describer's options)."""

    base_url: str = option("", flag="llm-base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 "
                                                          "(vLLM).")
    model: str = option("", flag="llm-model", resume=True, help="Model name the server serves.")
    timeout: float = option(120.0, flag="llm-timeout", help="Seconds per request.")
    retries: int = option(3, flag="llm-retries", help="Further tries after a failed request or an answer that does "
                                                      "not parse.")
    backoff: float = 0.5  # seconds before the first retry, doubled each time (as the OpenAI client does)
    concurrency: int = option(8, flag="llm-concurrency", help="Requests in flight.")
    temperature: float = 0.2
    max_tokens: int = 1024

    def check(self) -> None:
        if not (self.base_url and self.model):
            raise ValueError("--llm-base-url and --llm-model go together: give both")

    def info(self) -> dict[str, Any]:
        """What ``build.json`` records (no key)."""
        return {"base_url": self.base_url, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}


def _retry_after(headers: dict[str, str]) -> float | None:
    """The server's ``Retry-After`` (seconds), where it sent one."""
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(value, 0.0), 300.0)


def _content(reply: Reply) -> str:
    """The assistant's text of a chat completion; :class:`TryAgain` when the reply is not one."""
    try:
        return reply.body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise TryAgain("unusable answer: not a chat completion") from None


class ChatClient:
    """Chat completions, with structured answers where the server takes them and token usage counted."""

    def __init__(self, config: LLMConfig) -> None:
        from builder.llm_http import JSONPost

        self.config = config
        key = os.environ.get("OPENAI_API_KEY") or "unused"
        try:
            self.http = JSONPost(config.base_url, {"Authorization": f"Bearer {key}",
                                                   "User-Agent": "medtrinity-25m"}, config.timeout)
        except ValueError as exc:
            raise Reject("describe", redact(f"model server {config.base_url}: {exc}")) from None
        self.structured: bool | None = None  # None: not tried yet; False: the server refused response_format
        self.usage: dict[str, int] = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()

    def try_once(self, messages: list[dict[str, Any]], parse: Callable[[str], T],
                 schema: dict[str, Any] | None = None) -> T:
        """One request; :class:`TryAgain` (with the server's ``Retry-After``) when it fails or does not parse.

        With ``schema`` the answer is asked for as that JSON schema (``response_format``, which vLLM's guided
        decoding and OpenAI's structured outputs take); a server that refuses it (400) is asked without it from
        then on, the prompt alone carrying the contract.
        """
        extra: dict[str, Any] = {}
        if schema is not None and self.structured is not False:
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "answer", "schema": schema, "strict": True}}
        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens, **extra}
        from http.client import HTTPException  # loaded with the client (see __init__)

        try:
            reply = self.http.post("/chat/completions", body)
        except (OSError, HTTPException) as exc:
            raise TryAgain(f"{type(exc).__name__}: {exc}") from None
        if reply.status == 400 and extra and self.structured is None:
            self.structured = False  # the next try goes without response_format, at once
            raise TryAgain("server refused response_format (400)", retry_after=0.0)
        if reply.status != 200:
            raise TryAgain(f"server answered {reply.status}", _retry_after(reply.headers))
        text = _content(reply)
        if extra:
            self.structured = True
        self._count(reply.body.get("usage"))
        try:
            return parse(text)
        except ParseError as exc:
            raise TryAgain(f"unusable answer: {exc}") from None

    def _count(self, usage: Any) -> None:
        usage = usage if isinstance(usage, dict) else {}
        with self._lock:
            self.usage["requests"] += 1
            self.usage["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            self.usage["completion_tokens"] += int(usage.get("completion_tokens") or 0)

    def failed(self, stage: Stage | StageName, problem: str, tries: int) -> Reject:
        return Reject(stage, redact(f"{self.config.model} at {self.config.base_url}: {problem} "
                                    f"(after {tries} tries)"))

    def ask(self, messages: list[dict[str, Any]], parse: Callable[[str], T], stage: StageName = "describe",
            schema: dict[str, Any] | None = None) -> T:
        """The parsed answer to ``messages``; a :class:`Reject` after the last failed try."""
        try:
            return with_retries(lambda: self.try_once(messages, parse, schema), self.config.retries + 1,
                                self.config.backoff)
        except TryAgain as exc:
            raise self.failed(stage, exc.problem, self.config.retries + 1) from None
