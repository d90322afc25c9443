"""Which describer writes the text, and with what knowledge: the text stage's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from builder.llm import LLMConfig
from builder.options import NoOptions, name_only, option
from builder.pipeline.text.styles import Style
from builder.pipeline.text.verdicts import OnContradiction

__all__ = ["TextOptions"]


def _describers() -> Any:
    from builder.pipeline.text.registry import DESCRIBERS

    return DESCRIBERS


def _describer_names() -> Iterable[str]:
    return _describers().names()


def _style_names() -> Iterable[str]:
    from builder.pipeline.text.styles import STYLES

    return STYLES.names()


@dataclass(frozen=True)
class TextOptions:
    describer: str = option("template", resume=True, choices=_describer_names, help="Who writes the descriptions.")
    describer_options: Any = option(default_factory=NoOptions, registry=_describers, chosen_by="describer",
                                    help="The chosen describer's own options (its model, its server).")
    kb: str | None = option(None, resume=True, help="Knowledge base folder (medtri-build kb build).",
                            cli={"path": "folder"}, public=name_only)
    k: int = option(8, flag="kb-k", resume=True, help="Snippets per coarse caption.")
    style: Style = option("attributes", resume=True, choices=_style_names,
                          help="attributes: the five attributes joined; medtrinity: the release's one-paragraph form "
                               "and coarse captions.")
    draw_rois: bool = option(False, resume=True, help="Draw each ROI's box on the image a model describer sees "
                                                      "(never on the stored image).")
    on_contradiction: OnContradiction = option(
        "retry", resume=True,
        help="A model answer that contradicts what was measured (builder/checks.py): keep it, flag it, retry once "
             "naming the contradiction then flag, or retry once then reject the row (stage text).")
    cache_answers: bool = option(True, flag="answer-cache",
                                 help="Keep each model answer as it arrives (in the user's cache folder) and never ask "
                                      "the model again for a row it answered under the same model and prompt.")

    @property
    def concurrency(self) -> int:
        """Calls the describer takes at once (its server's requests in flight; one for a local model)."""
        options = self.describer_options
        return options.concurrency if isinstance(options, LLMConfig) else 1
