"""Which describer writes the text, and with what knowledge: the text stage's options."""

from __future__ import annotations

from dataclasses import dataclass

from builder.llm import LLMConfig

__all__ = ["TextOptions"]


@dataclass(frozen=True)
class TextOptions:
    describer: str = "template"  # a name of builder.pipeline.text.registry.DESCRIBERS
    llm: LLMConfig | None = None  # the openai describer's server
    model: str | None = None  # the transformers describer's checkpoint folder
    kb: str | None = None  # a knowledge base folder (medtri-build kb build)
    k: int = 8  # snippets per coarse caption
    style: str = "attributes"  # "medtrinity": the release's one-paragraph form (builder.pipeline.text.medtrinity)
    draw_rois: bool = False  # draw each ROI's box on the image a model sees (never on the stored image)
    cache_answers: bool = True  # keep model answers (builder.pipeline.text.answers): none is paid for twice
