"""Model-backed describers: an OpenAI-compatible server, or a local checkpoint.

They run in the build's main process (one client, one model), on batches of
rows, after knowledge retrieval; the template describer runs in the workers.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from builder.errors import Reject
from builder.llm import ChatClient, LLMConfig, ParseError, TryAgain, with_retries
from builder.pipeline.text.describers import DescribeRequest
from builder.pipeline.text.options import TextOptions
from builder.pipeline.text.prompts import PROMPT_VERSION, SYSTEM, parse_attributes, user_text


def _prompt(request: DescribeRequest) -> str:
    return user_text(request.coarse_caption, request.rois, request.view, request.knowledge)


class OpenAIDescriber:
    """A vision-language model behind an OpenAI-compatible chat-completions server."""

    name = "openai"

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.client = ChatClient(config)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "prompt_version": PROMPT_VERSION, **self.config.info()}

    def describe(self, request: DescribeRequest) -> dict[str, str]:
        image = base64.b64encode(request.image_png or b"").decode()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                {"type": "text", "text": _prompt(request)},
            ]},
        ]
        return self.client.ask(messages, parse_attributes)


@dataclass
class TransformersDescriber:
    """A local vision-language checkpoint through transformers' image-text-to-text pipeline."""

    model: str
    max_new_tokens: int = 768
    retries: int = 2
    name: str = "transformers"
    _pipe: Any = None

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "prompt_version": PROMPT_VERSION,
                "max_new_tokens": self.max_new_tokens}

    def _pipeline(self) -> Any:
        if self._pipe is None:
            import torch
            from transformers import pipeline

            device = 0 if torch.cuda.is_available() else -1
            self._pipe = pipeline("image-text-to-text", model=self.model, device=device)
        return self._pipe

    def describe(self, request: DescribeRequest) -> dict[str, str]:
        from PIL import Image

        image = Image.open(io.BytesIO(request.image_png or b"")).convert("RGB")
        messages = [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
                    {"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": _prompt(request)}]}]
        def attempt() -> dict[str, str]:
            out = self._pipeline()(text=messages, max_new_tokens=self.max_new_tokens, return_full_text=False)
            text = out[0]["generated_text"]
            try:
                return parse_attributes(text if isinstance(text, str) else str(text))
            except ParseError as exc:
                raise TryAgain(str(exc)) from None

        try:
            return with_retries(attempt, self.retries + 1)
        except TryAgain as exc:
            raise Reject("describe", f"{self.model}: unusable answer after {self.retries + 1} tries: "
                                     f"{exc.problem}") from None


def make_openai(options: TextOptions) -> OpenAIDescriber:
    if options.llm is None:
        raise ValueError("--describer openai needs --llm-base-url and --llm-model")
    return OpenAIDescriber(options.llm)


def make_transformers(options: TextOptions) -> TransformersDescriber:
    if not options.model:
        raise ValueError("--describer transformers needs --vlm-model PATH (a local checkpoint folder)")
    return TransformersDescriber(options.model)
