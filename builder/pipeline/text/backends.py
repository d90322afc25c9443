"""Model-backed describers: an OpenAI-compatible server, or a local checkpoint.

They run in the build's main process (one client, one model), on batches of
rows, after knowledge retrieval; the template describer runs in the workers.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import Reject
from builder.imaging import draw_boxes
from builder.llm import ChatClient, LLMConfig, ParseError, TryAgain, with_retries
from builder.pipeline.data import DescribeRequest
from builder.pipeline.text.describers import DescriberHooks
from builder.pipeline.text.options import TextOptions
from builder.pipeline.text.prompts import PROMPT_VERSION, SYSTEM, parse_attributes, user_text
from builder.pipeline.text.registry import TransformersOptions
from builder.pipeline.text.styles import STYLES


def _prompt(request: DescribeRequest, style: str) -> str:
    return user_text(request.coarse_caption, request.rois, request.view, request.knowledge, style, request.organ,
                     request.correction)


def _keys(style: str) -> tuple[str, ...]:
    return STYLES[style].keys


def _mime(data: bytes | None) -> str:
    return "image/jpeg" if (data or b"")[:3] == b"\xff\xd8\xff" else "image/png"


def _image(request: DescribeRequest, draw_rois: bool) -> bytes:
    """The image the model sees: the stored one, with each ROI's box drawn when asked (never stored)."""
    png = request.image_png or b""
    return draw_boxes(png, [roi.bbox for roi in request.rois]) if draw_rois and request.rois else png


class OpenAIDescriber(DescriberHooks):
    """A vision-language model behind an OpenAI-compatible chat-completions server."""

    name = "openai"

    def __init__(self, config: LLMConfig, style: str = "attributes", draw_rois: bool = False) -> None:
        self.config, self.style, self.draw_rois = config, style, draw_rois
        self.client = ChatClient(config)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "prompt_version": PROMPT_VERSION, **self.config.info(), "style": self.style,
                "draw_rois": self.draw_rois}

    @property
    def tries(self) -> int:
        return self.config.retries + 1

    @property
    def backoff(self) -> float:
        return self.config.backoff

    def messages(self, request: DescribeRequest) -> list[dict[str, Any]]:
        """The chat request of one row: the image as a data URL, then the prompt."""
        image = base64.b64encode(_image(request, self.draw_rois)).decode()
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:{_mime(request.image_png)};base64,{image}"}},
                {"type": "text", "text": _prompt(request, self.style)},
            ]},
        ]

    def schema(self) -> dict[str, Any]:
        """The answer as a JSON schema: every attribute a string, nothing else."""
        keys = list(_keys(self.style))
        return {"type": "object", "properties": {k: {"type": "string"} for k in keys}, "required": keys,
                "additionalProperties": False}

    def try_once(self, request: DescribeRequest) -> dict[str, str]:
        """One request for one row (the stage schedules retries): :class:`TryAgain` if it fails."""
        keys = _keys(self.style)
        return self.client.try_once(self.messages(request), lambda text: parse_attributes(text, keys), self.schema())

    def failed(self, problem: str) -> Reject:
        return self.client.failed("describe", problem, self.tries)

    def report(self) -> dict[str, Any]:
        """What build.json says of the model calls: structured or prompt-only answers, tokens used."""
        mode = {True: "json_schema", False: "prompt (the server refused response_format)", None: "none asked"}
        return {"structured_output": mode[self.client.structured], "usage": dict(self.client.usage)}

    def describe(self, request: DescribeRequest) -> dict[str, str]:
        keys = _keys(self.style)
        return self.client.ask(self.messages(request), lambda text: parse_attributes(text, keys),
                               schema=self.schema())


@dataclass
class TransformersDescriber(DescriberHooks):
    """A local vision-language checkpoint through transformers' image-text-to-text pipeline."""

    model: str
    max_new_tokens: int = 768
    retries: int = 2
    name: str = "transformers"
    style: str = "attributes"
    draw_rois: bool = False
    _pipe: Any = None

    def info(self) -> dict[str, Any]:
        # the checkpoint's folder name only: build.json is published, local paths are not
        return {"name": self.name, "model": Path(self.model).name, "prompt_version": PROMPT_VERSION,
                "max_new_tokens": self.max_new_tokens, "style": self.style, "draw_rois": self.draw_rois}

    def _pipeline(self) -> Any:
        if self._pipe is None:
            import torch
            from transformers import pipeline

            device = 0 if torch.cuda.is_available() else -1
            self._pipe = pipeline("image-text-to-text", model=self.model, device=device)
        return self._pipe

    def describe(self, request: DescribeRequest) -> dict[str, str]:
        from PIL import Image

        image = Image.open(io.BytesIO(_image(request, self.draw_rois))).convert("RGB")
        messages = [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
                    {"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": _prompt(request, self.style)}]}]
        def attempt() -> dict[str, str]:
            out = self._pipeline()(text=messages, max_new_tokens=self.max_new_tokens, return_full_text=False)
            text = out[0]["generated_text"]
            try:
                return parse_attributes(text if isinstance(text, str) else str(text), _keys(self.style))
            except ParseError as exc:
                raise TryAgain(str(exc)) from None

        try:
            return with_retries(attempt, self.retries + 1)
        except TryAgain as exc:
            raise Reject("describe", f"{self.model}: unusable answer after {self.retries + 1} tries: "
                                     f"{exc.problem}") from None


def make_openai(options: TextOptions) -> OpenAIDescriber:
    llm = options.describer_options
    if not isinstance(llm, LLMConfig) or not (llm.base_url and llm.model):
        raise ValueError("--describer openai needs --llm-base-url and --llm-model")
    return OpenAIDescriber(llm, options.style, options.draw_rois)


def make_transformers(options: TextOptions) -> TransformersDescriber:
    model = options.describer_options.model if isinstance(options.describer_options, TransformersOptions) else ""
    if not model:
        raise ValueError("--describer transformers needs --vlm-model PATH (a local checkpoint folder)")
    return TransformersDescriber(model, style=options.style, draw_rois=options.draw_rois)
