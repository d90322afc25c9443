"""From a work unit to finished rows: ROIs, coarse caption, description, PNGs.

:func:`process_unit` is what a worker runs. It returns a :class:`UnitResult`:
all of the unit's rows, or none of them and the reason (no partial file).
"""

from __future__ import annotations

import hashlib
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal

import numpy as np

from builder import pngcodec
from builder.errors import Reject, Stage, raised_by_reader_library
from builder.imaging import pixel_hash
from builder.options import option
from builder.pipeline import drawn_boxes
from builder.pipeline.body import Body, body_of
from builder.pipeline.burned_in import screen_record
from builder.pipeline.data import DescribeRequest, Record, Roi, Unit, UnitResult
from builder.pipeline.proposers import PROPOSERS, ProposalInput
from builder.pipeline.roi import convention, rois_from_boxes, rois_from_labelmap, rois_from_proposals
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.base import check_inside
from builder.pipeline.template import Template, TemplateError
from builder.pipeline.text.caption import coarse_caption, render, subject, template_values
from builder.pipeline.text.describers import Describer, set_text
from builder.pipeline.text.measure import measure_in
from builder.pipeline.text.options import TextOptions
from medtrinity_25m import REFERENCE_KEYS

OnError = Literal["reject", "raise"]  # a pipeline bug: a reject line (the build exits non-zero), or raised


def _encoders() -> list[str]:
    return ["auto", *pngcodec.ENCODERS]


@dataclass(frozen=True)
class TripletOptions:
    """How a work unit becomes rows: what a worker is given."""

    text: TextOptions = field(default_factory=TextOptions)  # the describer, its model and knowledge
    png_level: int = option(1, resume=True, flag=False,  # 1 is ~as small as 6 on medical images, and faster
                            help="zlib level of the PNGs.")
    png_encoder: str = option("auto", resume=True, choices=_encoders,
                              help="Who writes the PNGs: auto is the fastest installed (ISA-L, OpenCV, imagecodecs, "
                                   "then Pillow); the pixels are the same whichever.")
    unit_timeout: float = option(300.0, resume=True, help="Seconds one input file may take before it becomes a "
                                                          "reject.")
    dedup: bool = option(False, resume=True, help="Drop exact pixel duplicates in every source (medpix sources "
                                                  "always do).")
    max_memory: float = option(4.0, resume=True, help="GiB of memory each worker may grow by; an input needing more "
                                                      "is a reject (0: no limit).")
    on_error: OnError = option("reject", help="A bug of the pipeline (not bad input): a reject line and a failed "
                                              "build, or raise it.")
    restore_pixels: bool = option(False, resume=True,
                                  help="Rows of a published release whose ROI outlines were recovered from the "
                                       "pixels also get the image with the outlines painted out (column restored); "
                                       "the original is kept.")

    @property
    def memory_limit(self) -> int:
        """Bytes of address space a worker may grow by (0: no limit)."""
        return int(max(0.0, self.max_memory) * 2**30)

    def resolved(self) -> TripletOptions:
        """These options with ``auto`` resolved to the PNG encoder this machine has (workers get a name)."""
        return replace(self, png_encoder=pngcodec.choose(self.png_encoder))


MIN_SIDE = 4  # pixels: smaller images (empty, 1-pixel) are rejects, not samples


class _Timeout(BaseException):  # not an Exception: no reader's broad except may swallow it
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise a reject if the block outlives ``seconds`` (main thread only; else no limit).

    Python code is interrupted; a decoder stuck inside C code is caught by the
    pool's own watchdog, which replaces the worker.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Timeout:
        raise Reject("timeout", f"reading took longer than the {seconds:g} s limit (--unit-timeout)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def row_id(unit: Unit, plane: str | None, index: int | None, volume: int | None = None) -> str:
    """Stable id from the file's key and the slice: ``<source>-<20 hex digits>``.

    A 2D image's id is its file's (:attr:`Unit.id`); a slice or frame hashes
    the file key with plane and index. The file key is pseudonymous
    (:mod:`builder.privacy`), so no id reveals an input name. Dots are replaced
    so the id is a valid WebDataset key.
    """
    if index is None:
        return unit.id
    where = f"{unit.key}\0{plane or ''}\0{index}" + ("" if volume is None else f"\0{volume}")
    digest = hashlib.sha1(where.encode())
    return f"{unit.spec.name.replace('.', '_')}-{digest.hexdigest()[:20]}"


def encode_png(pixels: np.ndarray, level: int, encoder: str = "pillow") -> bytes:
    """PNG bytes of the pixels as they are: 8-bit, 16-bit gray or RGB; no metadata (:mod:`builder.pngcodec`)."""
    return pngcodec.encode(pixels, level, encoder)


def curate(unit: Unit) -> None:
    """Apply the curation file, then the format's rules; raise a reject naming the rule."""
    decision = unit.spec.curation.get(unit.id)
    if decision is not None:
        if decision.action == "drop":
            raise Reject("curation", f"dropped by the curation file: {decision.note or 'no note'}", rule="curation")
        return  # kept by a person: the rules do not apply
    for rule in ADAPTERS[unit.spec.format].rules:
        reason = rule.check(unit)
        if reason:
            raise Reject("curation", reason, rule=rule.name)


def _texts(templates: dict[str, str], values: dict[str, Any]) -> dict[str, str | None]:
    return {key: (render(template, values, key) or None) for key, template in templates.items()}


def annotate(record: Record) -> tuple[list[Roi], np.ndarray | None, Body]:
    """The record's annotated ROIs (its mask's labels, its boxes), the stored mask, and the body they lie in."""
    spec = record.unit.spec
    height, width = record.pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise Reject(Stage.SIZE, f"image is {width}x{height} pixels, smaller than {MIN_SIDE}x{MIN_SIDE}")
    rois: list[Roi] = []
    mask: np.ndarray | None = None
    labelled = None if record.labelmap is None else np.asarray(record.labelmap) != 0
    body = body_of(record.pixels, record.modality, labelled if labelled is not None and labelled.ndim == 2 else None)
    if record.labelmap is not None:
        names = record.label_names if record.label_names is not None else spec.options.label_names
        rois, mask = rois_from_labelmap(record.labelmap, names, default=spec.disease or "region", frame=body.box)
    rois += rois_from_boxes((*record.unit.boxes, *record.boxes), width, height, body.box)
    if record.release is not None and record.release.boxes:
        found = rois_from_boxes(record.release.boxes, width, height, body.box)
        rois += [replace(roi, origin=record.release.box_origin) for roi in found]
    return rois, mask, body


def propose(records: list[Record], annotated: list[list[Roi]], bodies: list[Body]) -> list[list[Roi]]:
    """Proposed ROIs per record: for those without annotations (or all, with ``mode: add``)."""
    found: list[list[Roi]] = [[] for _ in records]
    config = records[0].unit.spec.roi if records else None
    if config is None:
        return found
    wanted = [i for i, rois in enumerate(annotated) if config.mode == "add" or not rois]
    inputs = []
    for i in wanted:
        values = template_values(records[i], [])
        subj = subject(records[i], values)
        try:
            prompt = Template(config.prompt).render(dict(values, organ=subj.organ, disease=subj.disease))
        except TemplateError:
            prompt = ""
        inputs.append(ProposalInput(f"{i:05d}", records[i].pixels, records[i].modality, prompt))
    proposer = PROPOSERS[config.method]
    for i, proposals in zip(wanted, proposer.propose(inputs, config) if inputs else []):
        height, width = records[i].pixels.shape[:2]
        found[i] = rois_from_proposals(proposals, width, height, origin=proposer.name, frame=bodies[i].box)
    return found


def make_row(record: Record, rois: list[Roi], mask: np.ndarray | None, body: Body, describer: Describer | None,
             options: TripletOptions) -> tuple[dict[str, Any], DescribeRequest]:
    """One row (see ``medtrinity_25m.FEATURES``) and what its describer is given.

    ``rois`` are annotated then proposed; ``mask`` the stored label map of the
    annotated ones, ``body`` where the patient is. With ``describer`` None the row's text is left to the main process.
    """
    unit, spec = record.unit, record.unit.spec
    height, width = record.pixels.shape[:2]
    values = template_values(record, rois)
    subj = subject(record, values)
    shown = finding_shown(record, rois, subj.disease)
    stated = subj if shown is not False else replace(subj, disease="")
    caption = coarse_caption(record, rois, values, stated, options.text.style)
    released = record.release
    image = released.encoded if released else encode_png(record.pixels, options.png_level, options.png_encoder)
    request = DescribeRequest(
        id=released.id if released else row_id(unit, record.plane, record.slice_index, record.volume_index),
        modality=record.modality, organ=subj.organ, disease=subj.disease, plane=record.plane,
        slice_index=record.slice_index, coarse_caption=caption, rois=rois,
        # the measurements are for describers: a release's own caption is kept, and no describer runs
        stats=[] if released and released.caption else measure_in(body, record.pixels, mask, rois),
        view=convention(record.modality, record.plane), sequence=sequence(record),
        image_png=None if describer else image, spacing=record.spacing, finding_shown=shown,
    )
    texts = dict(values, organ=subj.organ, disease=subj.disease)
    spec_texts = _texts({"case_id": spec.case_id, "location": spec.location}, texts)
    reference = _texts(dict(spec.reference), texts)
    row = {
        "id": request.id,
        "image": {"bytes": image, "path": None},
        "mask": None if mask is None else {"bytes": encode_png(mask, options.png_level, options.png_encoder),
                                           "path": None},
        "restored": _restored(record, options),
        "modality": record.modality,
        "organ": subj.organ,
        "disease": subj.disease or None,
        "rois": [roi.as_row() for roi in rois],
        "coarse_caption": caption,
        "caption": None,
        "attributes": None,
        "knowledge": [],
        "checks": None,
        "reference": {key: reference.get(key) for key in REFERENCE_KEYS},
        "case_id": spec_texts["case_id"],
        "location": spec_texts["location"],
        "details": details(record),
        "source": (released.source if released else None) or spec.name,
        "source_file": released.public if released else unit.label,
        "subset": _text(unit.meta.get("subset")) if _public(spec) else None,
        "record": released.document if released else _text(unit.meta.get("record")) if _public(spec) else None,
        "plane": record.plane,
        "slice_index": record.slice_index,
        "pixel_spacing": list(record.spacing) if record.spacing else None,
        "width": width,
        "height": height,
        "license": spec.license,
        "pixels_withheld": not spec.redistribute,
    }
    if not spec.redistribute:  # the source's terms forbid sharing its pixels: annotations and text only
        row.update(image=None, mask=None, restored=None)
    if released is not None and released.caption:
        row["caption"] = released.caption  # the release's own description, verbatim: no describer rewrites it
    elif describer is not None:
        set_text(row, describer.describe(request), describer.name)
    return row, request


def _restored(record: Record, options: TripletOptions) -> dict[str, Any] | None:
    """The release's image with its drawn outlines painted out, as PNG: only with ``restore_pixels``."""
    released = record.release
    if not (options.restore_pixels and released and released.boxes):
        return None
    boxes = [(int(b.x_min), int(b.y_min), int(b.x_max), int(b.y_max)) for b in released.boxes]
    pixels = drawn_boxes.restore(record.pixels, boxes)
    return {"bytes": encode_png(pixels, options.png_level, options.png_encoder), "path": None}


def finding_shown(record: Record, rois: list[Roi], disease: str) -> bool | None:
    """Does this sample show its source's finding? None for a whole image (the finding is the image's).

    A slice or frame shows it only when an ROI the source names in ``finding_labels`` is on it; without
    that list no slice is said to show it (the text says the slice is from a study with that finding).
    """
    if not disease or record.slice_index is None:
        return None
    return any(roi.label in record.unit.spec.finding_labels for roi in rois)


def _public(spec: Any) -> bool:
    """A published release's adapter: its own documents may be published with its rows."""
    return ADAPTERS[spec.format].public_names


def details(record: Record) -> dict[str, str | None]:
    """Descriptive fields as given: a public release's, or metadata columns the source's templates name.

    A metadata column that no template names (``age``, ``sex``, ...) never reaches a row.
    """
    unit = record.unit
    public = _public(unit.spec)

    def given(name: str) -> str | None:
        return _text(unit.meta.get(name)) if public or name in unit.spec.referenced else None

    return {"modality_detail": given("modality_detail"),
            "plane": given("plane_given") or given("plane") or record.plane, "sequence": sequence(record),
            "burned_in": record.hints.get("burned_in"), "age": given("age"), "sex": given("sex")}


def sequence(record: Record) -> str | None:
    """An MR image's sequence: as its source states it, else as its DICOM series names it."""
    if record.modality != "mri":
        return None
    return record.unit.spec.sequence or record.hints.get("sequence")


def _text(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def read_records(unit: Unit, dropped: list[tuple[dict[str, Any], Reject]],
                 refused: list[Record] | None = None) -> list[Record]:
    """The unit's records from its adapter; an unusable sample's reject goes to ``dropped``.

    An exception that a decoding library raises on the file (not this project's code) is a reject of stage
    ``read`` naming the file: malformed input is never reported as an internal error.
    """
    records = []
    try:
        for record in ADAPTERS[unit.spec.format].records(unit):
            if record.reject is None:
                try:
                    screen_record(record)  # burned-in text: redacted, refused or flagged
                except Reject as exc:
                    record.reject = exc
                    if refused is not None:  # its notes (screened, refused) still count
                        refused.append(record)
            if record.reject is None:
                records.append(record)
            else:  # one unusable sample of the file (a blank frame): its own reject line
                where = record.release.id if record.release else row_id(unit, record.plane, record.slice_index)
                dropped.append(({"id": where}, record.reject))
    except (Reject, MemoryError, _Timeout):
        raise
    except Exception as exc:
        if not raised_by_reader_library(exc):
            raise
        raise Reject(Stage.READ, f"{unit.image.name} cannot be read ({type(exc).__name__}: {exc})") from None
    return records


def process_unit(unit: Unit, options: TripletOptions) -> UnitResult:
    """All rows of one unit, or a reject naming the stage and the reason."""
    from builder.pipeline.text.registry import DESCRIBERS

    entry = DESCRIBERS[options.text.describer]
    describer = entry.make(options.text) if entry.where == "worker" else None
    rows, hashes, requests = [], [], []
    dropped: list[tuple[dict[str, Any], Reject]] = []
    refused: list[Record] = []
    try:
        with time_limit(options.unit_timeout * unit.weight):
            curate(unit)
            check_inside(unit)
            records = read_records(unit, dropped, refused)
            annotated = [annotate(record) for record in records]
            proposed = propose(records, [rois for rois, _, _ in annotated], [body for _, _, body in annotated])
            for record, (rois, mask, body), extra in zip(records, annotated, proposed):
                row, request = make_row(record, rois + extra, mask, body, describer, options)
                rows.append(row)
                if options.dedup or unit.spec.dedup:  # the hash costs a pass over the pixels
                    hashes.append(pixel_hash(record.pixels))
                requests.append(request)
    except Reject as exc:
        return UnitResult(unit, reject=exc)
    except MemoryError:
        return UnitResult(unit, reject=Reject("read", "out of memory while reading"))
    except Exception as exc:  # a bug: a reject line and a failed build, or (on_error raise) the exception
        if options.on_error == "raise":
            raise
        return UnitResult(unit, reject=Reject(Stage.INTERNAL, f"{type(exc).__name__}: {exc}"))
    notes: dict[str, int] = {}
    for record in [*records, *refused]:
        for name, count in record.notes.items():
            notes[name] = notes.get(name, 0) + count
    return UnitResult(unit, rows=rows, hashes=hashes, requests=requests if describer is None else [], notes=notes,
                      dropped=dropped)
