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
from typing import Any, Callable

from builder.pipeline.text.describers import Describer, TemplateDescriber
from builder.pipeline.text.options import TextOptions
from builder.registry import Registry

__all__ = ["DESCRIBERS", "DescriberEntry"]


@dataclass(frozen=True)
class DescriberEntry:
    where: str  # "worker" or "main"
    make: Callable[[TextOptions], Describer]
    help: str = ""


def _openai(options: TextOptions) -> Any:
    from builder.pipeline.text.backends import make_openai

    return make_openai(options)


def _transformers(options: TextOptions) -> Any:
    from builder.pipeline.text.backends import make_transformers

    return make_transformers(options)


DESCRIBERS: Registry[DescriberEntry] = Registry("describers", {
    "template": DescriberEntry("worker", lambda options: TemplateDescriber(style=options.style),
                               "offline, deterministic sentences"),
    "openai": DescriberEntry("main", _openai, "a vision-language model behind an OpenAI-compatible server"),
    "transformers": DescriberEntry("main", _transformers, "a local image-text-to-text checkpoint"),
})
