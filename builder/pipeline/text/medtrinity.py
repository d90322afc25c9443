"""MedTrinity-25M's own form of the text (``--style medtrinity``).

The release writes one prose paragraph per image, attributes not labelled:
"The image is a chest CT scan prominently displaying the lungs ... The
left-center horizontally and middle vertically situated region of interest,
covering 1.0% of the area, ...". Positions are horizontal and vertical words in
the image frame (the stored ``position`` cell: left/center/right, top/middle/
bottom), areas "covering N% of the area". Coarse captions follow the paper's
example form ("A chest X-ray image with COVID-19 in the lungs").
"""

from __future__ import annotations

from typing import Any, Sequence

from medtrinity_25m import MODALITY_NAMES

__all__ = ["HORIZONTAL", "PROMPT_FORM", "VERTICAL", "coarse", "paragraph", "roi_phrase", "situated"]

HORIZONTAL = {"left": "left", "center": "center", "right": "right"}
VERTICAL = {"upper": "top", "center": "middle", "lower": "bottom"}
#: what the prompt of ``--style medtrinity`` adds: the caption key, in the release's form
PROMPT_FORM = """\
Also give the key "caption": one prose paragraph in MedTrinity-25M's form, attributes not labelled, e.g. "The image
is a chest CT scan prominently displaying the lungs ... The left horizontally and middle vertically situated region
of interest, covering 1.0% of the area, ...": positions as horizontal and vertical words in the image frame, areas as
"covering N% of the area".
"""


def situated(position: str) -> str:
    """"left horizontally and middle vertically" for the stored cell "center-left"."""
    row, col = ("center", "center") if position == "center" else position.split("-")
    return f"{HORIZONTAL[col]} horizontally and {VERTICAL[row]} vertically"


def _article(text: str) -> str:
    return "an" if text[:1].lower() in "aeiou" or text.startswith(("MRI", "X-", "MR ")) else "a"


def roi_phrase(name: str, position: str, area_ratio: float) -> str:
    """"The left horizontally and middle vertically situated region of interest, covering 1.0% of the area, ..."."""
    return (f"The {situated(position)} situated region of interest, covering {100 * area_ratio:.1f}% of the area, "
            f"is the {name}")


def coarse(modality: str, organ: str, disease: str) -> str:
    """"A chest X-ray image with COVID-19" / "An MRI image of the brain"."""
    name = MODALITY_NAMES.get(modality, modality)
    subject = f"{organ} {name}" if organ else name
    text = f"{subject} image" + (f" with {disease}" if disease else "")
    return f"{_article(text).capitalize()} {text}"


def paragraph(modality: str, organ: str, rois: Sequence[Any], sentences: Sequence[str]) -> str:
    """One paragraph: what the image is, then each region's sentences, in MedTrinity's words."""
    name = MODALITY_NAMES.get(modality, modality)
    opening = f"The image is {_article(name)} {name} image" + (f" prominently displaying the {organ}" if organ else "")
    return " ".join([opening + "."] + [s.strip() for s in sentences if s and s.strip()])
