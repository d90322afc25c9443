"""Burned-in text in DICOM pixels, screened with pydicom's ``deid``.

Ultrasound and secondary-capture images routinely carry names, dates and
institutions burned into their pixels while ``BurnedInAnnotation`` says nothing.
``deid`` ships the pixel-screening filters of clinical anonymizers (the CTP
MIRC rules and Stanford's), keyed on the header (Modality, Manufacturer,
ManufacturerModelName, ImageType, ...):

- whitelist: the image is known clean; it passes;
- graylist with coordinates: the text sits in known rectangles (a Philips CX50
  ultrasound's top band); they are blacked out in every frame, and counted;
- blacklist, or a flag without coordinates: text may be anywhere; the image is
  a reject unless the source allows burned-in text.

``BurnedInAnnotation`` is a CS value: compared without leading and trailing
spaces, in any case (``" YES"`` is YES).

What the header cannot decide, the pixels do: an image the header does not
vouch for (:func:`vouched`: ``BurnedInAnnotation`` NO on an ORIGINAL image that is
not ultrasound or a secondary capture) is screened by OCR
(:mod:`builder.pipeline.readers.ocr`), and a flag of deid's without a known region
(DERIVED or SECONDARY reformats) is left to it: where OCR is installed such an
image is no longer refused from its header alone. Header values read here only
decide; none is copied anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from builder.errors import Reject

__all__ = ["Screening", "burned_in_flag", "clean", "screen", "vouched"]

#: Modalities and SOP classes whose pixels routinely carry text: never vouched for by the header.
TEXT_PRONE_MODALITIES = frozenset({"US", "OT", "SC", "XC", "ES", "GM", "SM", "DOC"})
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its multi-frame children (.1 ... .4)


@dataclass(frozen=True)
class Screening:
    """deid's verdict: rectangles to black out ``(x0, y0, x1, y1)``, or why the image cannot be cleaned."""

    boxes: tuple[tuple[int, int, int, int], ...] = ()
    refusal: str | None = None
    regions_unknown: bool = False  # deid flags text without a known region: the refusal OCR may lift


def burned_in_flag(ds: Any) -> bool:
    """BurnedInAnnotation as DICOM defines a CS value: spaces at either end do not count."""
    value = ds.get("BurnedInAnnotation")
    return isinstance(value, str) and value.strip().upper() == "YES"


def vouched(ds: Any) -> bool:
    """The header says the pixels hold no text: BurnedInAnnotation NO, an ORIGINAL image, not ultrasound nor a
    secondary capture nor a screen save."""
    value = ds.get("BurnedInAnnotation")
    if not (isinstance(value, str) and value.strip().upper() == "NO"):
        return False
    image_type = [str(v).strip().upper() for v in (ds.get("ImageType") or [])]
    if not image_type or image_type[0] != "ORIGINAL" or "SECONDARY" in image_type:
        return False
    modality = str(ds.get("Modality", "")).strip().upper()
    return modality not in TEXT_PRONE_MODALITIES and not str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE)


@lru_cache(maxsize=1)
def _recipe() -> Any:
    logging.getLogger("deid").setLevel(logging.ERROR)
    try:
        from deid.config import DeidRecipe
        from deid.logger import bot
    except ImportError:
        return None
    bot.level = 0  # deid's own logger: quiet
    return DeidRecipe("dicom")


def _boxes(coordinates: list[Any]) -> list[tuple[int, int, int, int]]:
    boxes = []
    for value, region in coordinates:
        regions = region if isinstance(region, list) else [region]
        for text in regions:
            parts = [int(float(p)) for p in str(text).split(",")] if str(text).lower() != "all" else []
            if str(value) == "0" and len(parts) == 4:  # deid: 0 = remove, as minc, minr, maxc, maxr
                boxes.append((parts[0], parts[1], parts[2], parts[3]))
    return boxes


def screen(ds: Any) -> Screening:
    """What deid's default recipe says about ``ds`` (the header only)."""
    recipe = _recipe()
    if recipe is None:
        return Screening(refusal="deid is not installed: pixels cannot be screened for burned-in text "
                                 "(pip install deid)")
    from deid.dicom.pixels.detect import has_burned_pixels

    try:
        verdict = has_burned_pixels(ds, deid=recipe)
    except Exception as exc:  # deid on a malformed header: it cannot say the image is clean
        return Screening(refusal=f"deid could not screen the header ({type(exc).__name__})")
    results = verdict.get("results", [])
    if not verdict.get("flagged") or any(r.get("group") == "whitelist" for r in results):
        return Screening()
    boxes: list[tuple[int, int, int, int]] = []
    for result in results:
        found = _boxes(result.get("coordinates") or [])
        if result.get("group") == "blacklist" or not found:
            return Screening(refusal=f"deid's {result.get('group')} rules flag possible burned-in text with no "
                                     "known region to clean, and OCR is not installed to look at the pixels "
                                     "(pip install 'medtrinity-25m[ocr]'; or, if the source's pixels hold no text, "
                                     "set allow_burned_in: true on it)", regions_unknown=True)
        boxes += found
    return Screening(boxes=tuple(boxes))


def clean(frames: np.ndarray, boxes: tuple[tuple[int, int, int, int], ...]) -> np.ndarray:
    """Frames ``(F, H, W[, 3])`` with the rectangles blacked out (a copy)."""
    frames = np.array(frames, copy=True)
    for x0, y0, x1, y1 in boxes:
        frames[:, max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 0
    return frames


def refuse(screening: Screening) -> None:
    if screening.refusal:
        raise Reject("privacy", screening.refusal)
