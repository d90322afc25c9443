"""``format: dicom``: DICOM files; frames of multi-frame files and slices of mosaics are samples.

Modality from the header (``DICOM_MODALITIES``, extended by the source's
``modality_map``) unless the source sets one; frames as the header's window
shows them (DICOM's formulas), else the modality's default, else percentiles;
blank frames are reject lines; a cine keeps its middle frame by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

import numpy as np

from builder.errors import ManifestError, Problem, Reject
from builder.pipeline.data import Record, Unit
from builder.pipeline.readers import DicomReader, read_labelmap_2d
from builder.pipeline.readers.frames import display
from builder.pipeline.sources.base import FileSource, enumerate_units, expand, relative
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import DicomOptions
from builder.pipeline.sources.seg import pair_segmentations, seg_labelmaps
from builder.pipeline.sources.series import FOREIGN_SUFFIXES, series_units
from builder.pipeline.sources.series_records import series_records

__all__ = ["DICOM_MODALITIES", "DicomSource", "display", "kept_frames"]

#: DICOM Modality (0008,0060) -> config, when the manifest gives none.
DICOM_MODALITIES: dict[str, str] = {
    "CT": "ct",
    "MR": "mri",
    "CR": "xray",
    "DX": "xray",
    "DR": "xray",
    "MG": "xray",
    "RF": "xray",
    "XA": "xray",
    "US": "ultrasound",
    "PT": "pet",
    "SM": "pathology",
    "ES": "endoscopy",
    "OP": "fundus",
}


@dataclass(frozen=True)
class DicomSource(FileSource):
    """DICOM files; each kept frame of a multi-frame file (each slice of a mosaic) is one sample."""

    reader: DicomReader = field(default_factory=DicomReader)
    modality_from_data = True
    options = DicomOptions

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        if spec.options.series == "volume":
            return series_units(spec)
        listed, problems = enumerate_units(spec)
        units = [u for u in listed if not u.image.name.lower().endswith(FOREIGN_SUFFIXES)]
        problems += [Problem(u.rel, "side file (not DICOM)", skipped="side file (not DICOM)")
                     for u in listed if u.image.name.lower().endswith(FOREIGN_SUFFIXES)]
        if spec.options.segmentations is None:
            return units, problems
        segs = expand(spec, spec.options.segmentations)
        if not segs:  # the annotations were meant: as for masks, a glob that matches nothing is an error
            raise ManifestError("segmentations", f"{spec.options.segmentations!r} of source {spec.name!r} matches "
                                                 "no file")
        units = [u for u in units if u.image not in set(segs)]  # a SEG beside its images is no image
        pairs, found = pair_segmentations([u.image for u in units], segs, lambda p: relative(spec, p))
        return [replace(u, mask=pairs.get(u.image, u.mask)) for u in units], problems + found

    def records(self, unit: Unit) -> Iterator[Record]:
        if unit.series:
            yield from series_records(unit, replace(self.reader, allow_burned_in=unit.spec.options.allow_burned_in),
                                      self._modality)
            return
        options = unit.spec.options
        values, meta = replace(self.reader, allow_burned_in=options.allow_burned_in).read(unit.image)
        modality = unit.spec.modality or self._modality(meta.get("Modality"), options.modality_map)
        labelmaps: list[Any] = [None] * values.shape[0]
        names = None
        if unit.mask is not None and unit.mask.suffix.lower() in (".dcm", ".dicom", "") and options.segmentations:
            labelmaps, names = seg_labelmaps(unit.mask, meta["sop_instance_uid"], values.shape[0], values.shape[1:3])
        elif unit.mask is not None:
            if values.shape[0] != 1:
                raise Reject("mask", "a 2D mask cannot pair with a multi-frame DICOM")
            labelmaps = [read_labelmap_2d(unit.mask, values.shape[1:3], options.mask_threshold)]
        hints = {k: meta[k] for k in ("organ", "sequence", "screen_text") if meta.get(k)}
        multi = values.shape[0] > 1
        for number, index in enumerate(kept_frames(values.shape[0], options, meta["cine"])):
            pixels = values[index] if meta["color"] else display(values[index], meta["windows"][index], modality,
                                                                    meta["invert"])
            spacing = meta["spacing"][index]
            yield Record(
                unit=unit, pixels=pixels, labelmap=labelmaps[index], label_names=names, modality=modality,
                plane=meta["planes"][index],
                slice_index=index if multi else None, hints=hints, notes=meta["notes"] if number == 0 else {},
                spacing=tuple(spacing) if spacing else None, reject=_blank(values[index], index, multi),
            )

    @staticmethod
    def _modality(code: object, extra: Mapping[str, str]) -> str:
        key = str(code).strip().upper() if code is not None else ""
        known = {**DICOM_MODALITIES, **extra}
        if key not in known:
            raise Reject("modality", f"DICOM Modality {code!r} has no config; map it with 'modality_map' "
                                     "(e.g. {OT: xray}) or set 'modality' in the manifest")
        return known[key]


def kept_frames(count: int, options: DicomOptions, cine: bool) -> range:
    """The frames that become rows (see :class:`DicomOptions`)."""
    choice = options.frames if options.frames != "auto" else ("middle" if cine else "all")
    if count <= 1 or choice == "all":
        return range(0, count, options.slicing.step if count > 1 else 1)
    if choice == "middle":
        return range(count // 2, count // 2 + 1)
    return range(0, count, int(choice.split()[1]))


def _blank(values: np.ndarray, index: int, multi: bool) -> Reject | None:
    if values.size and values.min() == values.max():
        where = f"frame {index}" if multi else "the image"
        return Reject("read", f"{where} is blank (every pixel is {float(values.flat[0]):g})")
    return None
