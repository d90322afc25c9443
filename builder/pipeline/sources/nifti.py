"""``format: nifti``: volumes sliced along the source's plane; 4D series by volume; masks are label volumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from builder.errors import Reject
from builder.pipeline.data import Record, Unit
from builder.pipeline.readers import READERS
from builder.pipeline.readers.display import window_for, windowing
from builder.pipeline.readers.nifti import n_slices, sample, scaled, slice_display, slice_spacing
from builder.pipeline.roi import as_labels
from builder.pipeline.sources.base import FileSource
from builder.pipeline.sources.options import NiftiOptions

__all__ = ["NiftiSource"]


@dataclass(frozen=True)
class NiftiSource(FileSource):
    """NIfTI volumes, sliced along the manifest's plane; masks are label volumes."""

    options = NiftiOptions

    def records(self, unit: Unit) -> Iterator[Record]:
        options = unit.spec.options
        volume, meta = READERS["nifti"].read(unit.image)
        notes: dict[str, int] = {}
        if meta["nonfinite"]:
            if options.nan == "reject":
                raise Reject("read", f"{meta['nonfinite']} voxels are NaN or infinite (set nan: zero to zero them)")
            volume = np.nan_to_num(volume, copy=not volume.flags.writeable, nan=0.0, posinf=0.0, neginf=0.0)
            notes["nan_voxels_zeroed"] = int(meta["nonfinite"])
        if volume.size and volume.min() == volume.max():
            raise Reject("read", f"the volume is blank (every voxel is {float(volume.flat[0]):g})")
        labels = self._labels(unit, volume.shape[:3], meta)
        modality = unit.spec.modality or ""
        for number, (stack, which) in enumerate(_volumes(volume, options.volume)):
            yield from self._slices(unit, stack, which, labels, meta, modality, notes if number == 0 else {})

    @staticmethod
    def _labels(unit: Unit, shape: tuple[int, ...], meta: dict) -> np.ndarray | None:
        if unit.mask is None:
            return None
        label_volume, label_meta = READERS["nifti"].read(unit.mask)
        if label_volume.shape != shape or not np.allclose(label_meta["affine"], meta["affine"], atol=1e-3):
            raise Reject("mask", f"label volume {unit.mask.name} is on another grid (shape {label_volume.shape}, "
                                 f"affine {label_meta['affine']}) than the image (shape {shape}, "
                                 f"affine {meta['affine']}); it is not resampled")
        return as_labels(label_volume if label_meta["scale"] == (1.0, 0.0) else
                         scaled(label_volume, label_meta["scale"]))

    @staticmethod
    def _slices(unit: Unit, volume: np.ndarray, which: int | None, labels: np.ndarray | None, meta: dict,
                modality: str, notes: dict[str, int]) -> Iterator[Record]:
        slicing = unit.spec.options.slicing
        window = window_for(scaled(sample(volume), meta["scale"]), modality, None)
        display = windowing(volume.dtype, meta["scale"], window)  # a lookup table for 8- and 16-bit voxels
        spacing = slice_spacing(meta["zooms"], slicing.plane)
        first = True
        for index in range(0, n_slices(volume.shape, slicing.plane), slicing.step):
            labelmap = None if labels is None else slice_display(labels, slicing.plane, index)
            if slicing.only_with_roi and (labelmap is None or not labelmap.any()):
                continue
            pixels = display(slice_display(volume, slicing.plane, index))
            yield Record(unit=unit, pixels=pixels, labelmap=labelmap, modality=modality, plane=slicing.plane,
                         slice_index=index, spacing=spacing, volume_index=which, notes=notes if first else {})
            first = False


def _volumes(volume: np.ndarray, choice: str) -> Iterator[tuple[np.ndarray, int | None]]:
    """The 3D volumes to slice: the volume itself, or of a 4D series the chosen one(s), the mean."""
    if volume.ndim == 3:
        yield volume, None
        return
    count = volume.shape[3]
    if choice == "mean":
        yield volume.mean(axis=3, dtype=np.float32), None
    elif choice == "all":
        for index in range(count):
            yield volume[..., index], index
    elif int(choice) < count:
        yield volume[..., int(choice)], int(choice)
    else:
        raise Reject("read", f"the series has {count} volumes; volume {choice} does not exist")
