"""Caption styles: how the text is shaped (``--style``). One entry per style, each owning its forms.

A style owns the coarse caption it writes when a source has no caption rule of
its own, the phrase naming an ROI in a prompt and in a template sentence, the
keys a describer answers, and what the prompt adds. ``attributes`` (the five
attributes joined) and ``medtrinity`` (the release's one-paragraph form,
:mod:`builder.pipeline.text.medtrinity`) are built in; a new style is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from builder.anatomy import plain_label
from builder.pipeline.roi import position_text, region_of
from builder.pipeline.text import medtrinity
from builder.registry import Registry
from medtrinity_25m import ATTRIBUTE_KEYS

__all__ = ["STYLES", "CaptionStyle", "Style", "cap", "percent", "where"]

Style = str  # a name of STYLES


def cap(text: str) -> str:
    """A sentence starting with a capital, even when it starts with a label."""
    return text[:1].upper() + text[1:]


def percent(ratio: float) -> str:
    pct = 100.0 * ratio
    return f"{pct:.1f}%" if pct >= 0.1 else f"{pct:.2f}%"


def _attributes_prompt_roi(roi: Any, where: str) -> str:
    x0, y0, x1, y1 = roi.bbox
    return (f"{plain_label(roi.label)}, {where}, area ratio {100 * roi.area_ratio:.1f}%, "
            f"box [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")


def _medtrinity_prompt_roi(roi: Any, where: str) -> str:  # the paper's ROI text: "left-center", "area ratio: 1.2%"
    return f"{plain_label(roi.label)}, {medtrinity.situated(roi.position)}, area ratio: {100 * roi.area_ratio:.1f}%"


def _attributes_sentence(name: str, roi: Any, where: str, box: str) -> str:
    return cap(f"{name} lies in the {where}, area ratio {percent(roi.area_ratio)} ({box}).")


def _medtrinity_sentence(name: str, roi: Any, where: str, box: str) -> str:
    return f"{medtrinity.roi_phrase(name, roi.position, roi.area_ratio)} ({box})."


def where(roi: Any, view: str, organ: str) -> str:
    """The ROI's stored position in words (:func:`builder.pipeline.roi.position_text`), within its organ's body
    region."""
    return position_text(roi.position, view, region_of(organ))


@dataclass(frozen=True)
class CaptionStyle:
    keys: tuple[str, ...]  # what a model describer answers
    prompt_form: str  # what the prompt adds to the instructions
    prompt_roi: Callable[[Any, str], str]  # (roi, where) -> how a prompt lists the ROI (where: :func:`where`)
    roi_sentence: Callable[[str, Any, str, str], str]  # (name, roi, where, box) -> the template describer's sentence
    every_roi: bool  # the template describer describes every ROI (else the largest few)
    paragraph: bool  # the template describer also writes the caption as one paragraph
    coarse: Callable[[str, str, str], str] | None = None  # (modality, organ, disease), for sources without a rule


STYLES: Registry[CaptionStyle] = Registry("styles", {
    "attributes": CaptionStyle(ATTRIBUTE_KEYS, "", _attributes_prompt_roi, _attributes_sentence, every_roi=False,
                               paragraph=False),
    "medtrinity": CaptionStyle((*ATTRIBUTE_KEYS, "caption"), medtrinity.PROMPT_FORM, _medtrinity_prompt_roi,
                               _medtrinity_sentence, every_roi=True, paragraph=True, coarse=medtrinity.coarse),
})
