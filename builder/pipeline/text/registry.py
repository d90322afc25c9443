"""Describers: one registry, each entry saying where it runs.

- ``worker``: cheap and deterministic, run inside every worker process next to
  the row it describes (``template``);
- ``main``: one model for the whole build (a server client, a local checkpoint),
  run in the main process after knowledge retrieval, or served by the engine
  (Ray actors) when it can.

A new describer is one class with ``name``, ``info()`` and ``describe(request)``
(:class:`builder.pipeline.text.describers.Describer`) and one entry here (or in
the ``medtrinity_25m.describers`` entry point).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from builder.llm import LLMConfig
from builder.options import NoOptions, option
from builder.pipeline.text.describers import Describer, TemplateDescriber
from builder.pipeline.text.options import TextOptions
from builder.registry import Registry

__all__ = ["DESCRIBERS", "DescriberEntry", "TransformersOptions", "Where"]


Where = Literal["worker", "main"]


@dataclass(frozen=True)
class DescriberEntry:
    where: Where
    make: Callable[[TextOptions], Describer]
    help: str = ""
    options: type = NoOptions  # the describer's own settings (TextOptions.describer_options)


def _openai(options: TextOptions) -> Any:
    from builder.pipeline.text.backends import make_openai

    return make_openai(options)


@dataclass(frozen=True)
class TransformersOptions:
    """``--describer transformers``: the checkpoint."""

    model: str = option("", flag="vlm-model", resume=True,
                        help="Local vision-language checkpoint folder (--describer transformers).")


def _transformers(options: TextOptions) -> Any:
    from builder.pipeline.text.backends import make_transformers

    return make_transformers(options)


DESCRIBERS: Registry[DescriberEntry] = Registry("describers", {
    "template": DescriberEntry("worker", lambda options: TemplateDescriber(style=options.style),
                               "offline, deterministic sentences"),
    "openai": DescriberEntry("main", _openai, "a vision-language model behind an OpenAI-compatible server", LLMConfig),
    "transformers": DescriberEntry("main", _transformers, "a local image-text-to-text checkpoint",
                                   TransformersOptions),
})
