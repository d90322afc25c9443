"""The built-in source adapters: ``image``, ``dicom`` and ``nifti``.

They differ only in how a unit's file becomes 2D records; enumeration,
pairing and side tables are shared (:mod:`builder.pipeline.sources.base`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from builder.errors import Reject
from builder.pipeline.readers import READERS, DicomReader, read_labelmap_2d
from builder.pipeline.readers.display import to_uint8, window_for
from builder.pipeline.readers.nifti import n_slices, sample, scaled, slice_display
from builder.pipeline.roi import as_labels
from builder.pipeline.sources.base import FileSource, Record, Unit
from builder.pipeline.sources.options import DicomOptions, ImageOptions, NiftiOptions

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
class ImageSource(FileSource):
    """PNG/JPEG/TIFF images, each one sample; masks are label-map images."""

    options = ImageOptions

    def records(self, unit: Unit) -> Iterator[Record]:
        pixels, _ = READERS["image"].read(unit.image)
        labelmap = read_labelmap_2d(unit.mask, pixels.shape[:2]) if unit.mask else None
        yield Record(unit=unit, pixels=pixels, labelmap=labelmap, modality=unit.spec.modality or "")


@dataclass(frozen=True)
class DicomSource(FileSource):
    """DICOM files; each frame of a multi-frame file is one sample."""

    reader: DicomReader = field(default_factory=DicomReader)
    modality_from_data = True
    options = DicomOptions

    def records(self, unit: Unit) -> Iterator[Record]:
        frames, meta = replace(self.reader, allow_burned_in=unit.spec.options.allow_burned_in).read(unit.image)
        modality = unit.spec.modality or self._modality(meta.get("Modality"))
        labelmap = None
        if unit.mask is not None:
            if frames.shape[0] != 1:
                raise Reject("mask", "a 2D mask cannot pair with a multi-frame DICOM")
            labelmap = read_labelmap_2d(unit.mask, frames.shape[1:3])
        window = None if meta["color"] else window_for(frames, modality, _window(meta))
        hints = {"organ": meta["organ"]} if meta.get("organ") else {}
        multi = frames.shape[0] > 1
        for number, index in enumerate(range(0, frames.shape[0], unit.spec.options.slicing.step if multi else 1)):
            frame = frames[index]
            pixels = frame.astype(np.uint8) if window is None else to_uint8(frame, window, meta["invert"])
            yield Record(
                unit=unit, pixels=pixels, labelmap=labelmap, modality=modality, plane=meta.get("plane"),
                slice_index=index if multi else None, hints=hints, notes=meta["notes"] if number == 0 else {},
            )

    @staticmethod
    def _modality(code: object) -> str:
        if code not in DICOM_MODALITIES:
            raise Reject("modality", f"DICOM Modality {code!r} has no config; set 'modality' in the manifest")
        return DICOM_MODALITIES[str(code)]


def _window(meta: dict) -> tuple[float, float] | None:
    window = meta.get("window")
    return (float(window[0]), float(window[1])) if window else None


@dataclass(frozen=True)
class NiftiSource(FileSource):
    """NIfTI volumes, sliced along the manifest's plane; masks are label volumes."""

    options = NiftiOptions

    def records(self, unit: Unit) -> Iterator[Record]:
        reader = READERS["nifti"]
        volume, meta = reader.read(unit.image)
        labels = None
        if unit.mask is not None:
            label_volume, label_meta = reader.read(unit.mask)
            if label_volume.shape != volume.shape or not np.allclose(
                label_meta["affine"], meta["affine"], atol=1e-3
            ):
                raise Reject(
                    "mask",
                    f"label volume {unit.mask.name} is on another grid (shape {label_volume.shape}, "
                    f"affine {label_meta['affine']}) than the image (shape {volume.shape}, "
                    f"affine {meta['affine']}); it is not resampled",
                )
            labels = as_labels(label_volume if label_meta["scale"] == (1.0, 0.0) else
                               scaled(label_volume, label_meta["scale"]))
        modality = unit.spec.modality or ""
        window = window_for(scaled(sample(volume), meta["scale"]), modality, None)
        slicing = unit.spec.options.slicing
        for index in range(0, n_slices(volume.shape, slicing.plane), slicing.step):
            labelmap = None if labels is None else slice_display(labels, slicing.plane, index)
            if slicing.only_with_roi and (labelmap is None or not labelmap.any()):
                continue
            pixels = to_uint8(scaled(slice_display(volume, slicing.plane, index), meta["scale"]), window)
            yield Record(
                unit=unit, pixels=pixels, labelmap=labelmap, modality=modality,
                plane=slicing.plane, slice_index=index,
            )
