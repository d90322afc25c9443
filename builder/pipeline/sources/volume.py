"""``format: volume`` (``nifti`` is a name for it): NIfTI, NRRD and MetaImage volumes sliced along the source's
plane; 4D series by volume; masks are label volumes, or one binary volume per structure (``structures:``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np

from builder.errors import Reject
from builder.pipeline.data import Box, Record, Sphere, Unit, file_stem
from builder.pipeline.readers import reader_for
from builder.pipeline.readers.display import window_for, windowing
from builder.pipeline.readers.nifti import PLANE_AXIS, n_slices, sample, scaled, slice_display, slice_spacing
from builder.pipeline.roi import as_labels
from builder.pipeline.sources.base import FileSource
from builder.pipeline.sources.options import VOLUME_SUFFIXES, VolumeOptions

__all__ = ["VolumeSource", "read_volume"]


def read_volume(path: Path) -> tuple[np.ndarray, dict]:
    """A RAS+ volume and its meta, by the reader of the file's suffix (NIfTI: nibabel; NRRD, MetaImage: SimpleITK)."""
    return reader_for(path).read(path)


@dataclass(frozen=True)
class VolumeSource(FileSource):
    """Volumes, sliced along the manifest's plane; masks are label volumes or one binary volume per structure."""

    options: ClassVar[type] = VolumeOptions
    suffixes = VOLUME_SUFFIXES

    def records(self, unit: Unit) -> Iterator[Record]:
        options = unit.spec.options
        volume, meta = read_volume(unit.image)
        notes: dict[str, int] = {}
        if meta["nonfinite"]:
            if options.nan == "reject":
                raise Reject("read", f"{meta['nonfinite']} voxels are NaN or infinite (set nan: zero to zero them)")
            volume = np.nan_to_num(volume, copy=not volume.flags.writeable, nan=0.0, posinf=0.0, neginf=0.0)
            notes["nan_voxels_zeroed"] = int(meta["nonfinite"])
        if volume.size and volume.min() == volume.max():
            raise Reject("read", f"the volume is blank (every voxel is {float(volume.flat[0]):g})")
        names: dict[int, str] | None = None
        labels: np.ndarray | None
        if unit.structures:
            labels, names = structure_labels(unit.structures, volume.shape[:3], meta)
        else:
            labels = None if unit.mask is None else label_volume(unit.mask, volume.shape[:3], meta)
            names = self.label_names(unit)
        modality = unit.spec.modality or self.modality(unit)
        for number, (stack, which) in enumerate(_volumes(volume, self.volume_choice(unit))):
            for record in self._slices(unit, stack, which, labels, meta, modality, notes if number == 0 else {}):
                record.label_names = names
                yield record

    # what a layout of volumes says of each unit (nnU-Net's dataset.json); a plain source says nothing

    def volume_choice(self, unit: Unit) -> str:
        """Which volume(s) of a 4D file become slices (``volume:``)."""
        return str(unit.spec.options.volume)

    def modality(self, unit: Unit) -> str:
        """The unit's modality when the manifest gives none."""
        return ""

    def label_names(self, unit: Unit) -> dict[int, str] | None:
        """The label map's own names, where the layout gives them."""
        return None

    def only_with_roi(self, unit: Unit) -> bool:
        return bool(unit.spec.options.slicing.only_with_roi)

    def _slices(self, unit: Unit, volume: np.ndarray, which: int | None, labels: np.ndarray | None, meta: dict,
                modality: str, notes: dict[str, int]) -> Iterator[Record]:
        slicing = unit.spec.options.slicing
        only_with_roi = self.only_with_roi(unit)
        window = window_for(scaled(sample(volume), meta["scale"]), modality, None)
        display = windowing(volume.dtype, meta["scale"], window)  # a lookup table for 8- and 16-bit voxels
        spacing = slice_spacing(meta["zooms"], slicing.plane)
        first = True
        centres = sphere_centres(unit.spheres, meta["affine"])
        for index in range(0, n_slices(volume.shape, slicing.plane), slicing.step):
            labelmap = None if labels is None else slice_display(labels, slicing.plane, index)
            boxes = sphere_boxes(unit.spheres, centres, meta["zooms"], volume.shape, slicing.plane, index)
            if only_with_roi and (labelmap is None or not labelmap.any()) and not boxes:
                continue
            pixels = display(slice_display(volume, slicing.plane, index))
            yield Record(unit=unit, pixels=pixels, labelmap=labelmap, modality=modality, plane=slicing.plane,
                         slice_index=index, spacing=spacing, volume_index=which, notes=notes if first else {},
                         boxes=boxes)
            first = False


#: For each plane, the RAS+ axes that run along a displayed slice's columns and rows (both shown reversed).
DISPLAY_AXES = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}


def sphere_centres(spheres: tuple[Sphere, ...], affine: list[list[float]]) -> list[np.ndarray]:
    """Each sphere's centre as (fractional) voxel indices of the RAS+ volume: world LPS -> RAS -> voxels."""
    inverse = np.linalg.inv(np.asarray(affine, dtype=float))
    return [(inverse @ np.array([-s.x, -s.y, s.z, 1.0]))[:3] for s in spheres]


def sphere_boxes(spheres: tuple[Sphere, ...], centres: list[np.ndarray], zooms: list[float],
                 shape: tuple[int, ...], plane: str, index: int) -> tuple[Box, ...]:
    """The box of each sphere's section on slice ``index`` (pixel edges of the displayed slice): a slice whose
    centre lies within a sphere's radius shows the circle of radius sqrt(R^2 - d^2) around its centre."""
    across = PLANE_AXIS[plane]
    col_axis, row_axis = DISPLAY_AXES[plane]
    boxes = []
    for sphere, centre in zip(spheres, centres):
        radius = sphere.diameter / 2
        distance = abs(index - centre[across]) * zooms[across]
        if distance > radius:
            continue
        section = math.sqrt(radius**2 - distance**2)
        column = shape[col_axis] - 1 - centre[col_axis] + 0.5  # the voxel centre as a pixel-edge coordinate
        row = shape[row_axis] - 1 - centre[row_axis] + 0.5
        half_w, half_h = section / zooms[col_axis], section / zooms[row_axis]
        boxes.append(Box(column - half_w, row - half_h, column + half_w, row + half_h, sphere.label))
    return tuple(boxes)


def _on_grid(path: Path, values: np.ndarray, found: dict, shape: tuple[int, ...], meta: dict) -> None:
    if values.shape[:3] != shape or not np.allclose(found["affine"], meta["affine"], atol=1e-3):
        raise Reject("mask", f"label volume {path.name} is on another grid (shape {values.shape}, "
                             f"affine {found['affine']}) than the image (shape {shape}, "
                             f"affine {meta['affine']}); it is not resampled")


def label_volume(path: Path, shape: tuple[int, ...], meta: dict) -> np.ndarray:
    """A label volume on the image's grid, as integer labels (a float-stored label map is rounded, never cut)."""
    values, found = read_volume(path)
    _on_grid(path, values, found, shape, meta)
    return as_labels(values if found["scale"] == (1.0, 0.0) else scaled(values, found["scale"]))


def structure_labels(paths: tuple[Path, ...], shape: tuple[int, ...], meta: dict) -> tuple[np.ndarray, dict[int, str]]:
    """One label volume from one binary volume per structure (TotalSegmentator's ``segmentations/``): structure
    ``i`` of the sorted files is label ``i + 1``, named by its file stem; an empty structure gives no label."""
    labels = np.zeros(shape, dtype=np.uint16)
    names: dict[int, str] = {}
    for value, path in enumerate(paths, start=1):
        values, found = read_volume(path)
        _on_grid(path, values, found, shape, meta)
        inside = values != 0
        if inside.any():
            labels[inside] = value
            names[value] = file_stem(path)
    return labels, names


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
