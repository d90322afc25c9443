"""Burned-in text in a sample's pixels: looked for by OCR, then redacted, refused or flagged (``burned_in``).

A sample is looked at when its source says so (``screen_text: true``: ultrasound
exports, screen saves, MedPix's annotated figures) or when its DICOM header does
not vouch for its pixels (:func:`builder.pipeline.readers.screen.vouched`). With
text found (:func:`builder.pipeline.readers.ocr.find_text`), the source's policy:

- ``redact`` (default): the text's boxes are blacked out; the row's
  ``details.burned_in`` says how many regions and what share of the image. Text
  over :data:`MAX_REDACTED` of the image is not a label but a screenshot or a
  report page: a reject of stage ``privacy``;
- ``reject``: a reject of stage ``privacy``;
- ``flag``: kept as it is, ``details.burned_in`` says so.

Without OCR installed, nothing is looked at: build.json counts the samples that
were not (``pixels_not_screened_by_ocr``) and DICOM's header rules decide alone.
What OCR read is never kept.
"""

from __future__ import annotations

from typing import Any

from builder.errors import Reject
from builder.pipeline.data import Record
from builder.pipeline.readers import ocr

__all__ = ["MAX_REDACTED", "method", "screen_record"]

MAX_REDACTED = 0.3  # of the image's area: past it a redaction would leave no image worth keeping (a page, a screenshot)


def method() -> dict[str, Any]:
    """How DICOM inputs are de-identified, in DICOM PS3.15 Annex E's terms (CID 7050 codes), for build.json and
    the card: no header value is copied but an allowlist of technical attributes (the Basic Profile), UIDs and
    file names become pseudonymous ids, overlays and descriptions are never published, and pixels are cleaned
    of the regions deid's device rules know and, with OCR installed, of the text OCR finds."""
    looked = ocr.available()
    options = ["113100 Basic Application Confidentiality Profile",
               *(["113101 Clean Pixel Data Option"] if looked else []),
               "113103 Clean Graphics Option", "113105 Clean Descriptors Option"]
    return {"standard": "DICOM PS3.15 Annex E", "options": options,
            "pixels": ("OCR (RapidOCR's ONNX detector and recogniser) on every image the header does not vouch "
                       "for and every source with screen_text, then deid's device rules" if looked else
                       "deid's device rules only: OCR is not installed (the ocr extra)"),
            "ocr": {"engine": "rapidocr-onnxruntime", "version": _version("rapidocr-onnxruntime"),
                    "min_characters": ocr.MIN_CHARACTERS, "min_score": ocr.MIN_SCORE,
                    "max_redacted": MAX_REDACTED} if looked else None}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _wanted(record: Record) -> bool:
    return bool(record.hints.get("screen_text")) or bool(getattr(record.unit.spec.options, "screen_text", False))


def _note(record: Record, name: str) -> None:
    record.notes[name] = record.notes.get(name, 0) + 1


def screen_record(record: Record) -> None:
    """Look for text in the record's pixels and apply its source's policy: the pixels redacted in place, the
    decision in ``hints["burned_in"]`` (the row's ``details.burned_in``), or a :class:`Reject`."""
    if not _wanted(record):
        return
    if not ocr.available():
        _note(record, "pixels_not_screened_by_ocr")
        return
    found = ocr.find_text(record.pixels)
    _note(record, "pixels_screened_by_ocr")
    if not found.boxes:
        return
    policy = getattr(record.unit.spec.options, "burned_in", "redact")
    where = f"{len(found.boxes)} region{'s' if len(found.boxes) > 1 else ''}, {100 * found.share:.1f}% of the image"
    if policy == "reject" or (policy == "redact" and found.share > MAX_REDACTED):
        _note(record, "burned_in_text_rejected")
        too_much = f", over the {100 * MAX_REDACTED:.0f}% that redaction may black out" if policy == "redact" else ""
        raise Reject("privacy", f"text is burned into the pixels ({where}{too_much})")
    if policy == "flag":
        _note(record, "burned_in_text_flagged")
        record.hints["burned_in"] = f"text found and kept ({where})"
        return
    record.pixels = ocr.redact(record.pixels, found.boxes)
    _note(record, "burned_in_text_redacted")
    record.hints["burned_in"] = f"text redacted ({where})"
