"""Readers: one interface, ``read(path) -> (array, meta)``, picked by a registry.

=========  ============================  ==========================================
format     array                         meta (plain, JSON-able values)
=========  ============================  ==========================================
dicom      frames: (F, H, W[, 3])        allowlisted header attributes, ``window``,
           modality LUT applied           ``invert`` (MONOCHROME1), ``plane``
nifti      volume (X, Y, Z), RAS+         ``affine``, ``zooms``
itk        the same, of NRRD / MetaImage  the same
image      (H, W) or (H, W, 3)           ``mode``, ``bits``
=========  ============================  ==========================================

A reader raises :class:`builder.errors.Reject` for input it cannot read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from builder.pipeline.readers.dicom import DicomReader
from builder.pipeline.readers.itk import ItkReader
from builder.pipeline.readers.nifti import NiftiReader
from builder.pipeline.readers.raster import RasterReader
from builder.registry import Registry


class Reader(Protocol):
    @property
    def suffixes(self) -> tuple[str, ...]: ...

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]: ...


READERS: Registry[Reader] = Registry("readers", {
    "dicom": DicomReader(),
    "nifti": NiftiReader(),
    "itk": ItkReader(),
    "image": RasterReader(),
})


def reader_for(path: Path) -> Reader:
    """The reader whose suffixes end ``path``'s name (the first registered, for a name two could read)."""
    name = path.name.lower()
    for reader in READERS.values():
        if name.endswith(reader.suffixes):
            return reader
    from builder.errors import Reject

    known = ", ".join(suffix for reader in READERS.values() for suffix in reader.suffixes)
    raise Reject("read", f"no reader takes {path.name} (known: {known})")


def read_labelmap_2d(path: Path, shape: tuple[int, int], threshold: int | None = None) -> np.ndarray:
    """A 2D label map (PNG/TIFF, one channel) that must match an image's (H, W); with ``threshold``, a binary mask
    stored lossily (Kvasir-SEG's JPEG masks): label 1 where the value exceeds it."""
    from PIL import Image

    from builder.errors import Reject

    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except Exception as exc:
        raise Reject("mask", f"mask {path.name} is not a readable image ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and threshold is not None:  # a lossy binary mask: its channels differ a little
        arr = arr[..., :3].max(axis=2)
    if arr.ndim == 3:
        if arr.shape[2] not in (3, 4) or not (arr[..., :1] == arr[..., 1:3]).all():
            raise Reject("mask", f"mask {path.name} is a colour image, not a single-channel label map")
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise Reject("mask", f"mask {path.name} is {arr.shape[1]}x{arr.shape[0]}, image is {shape[1]}x{shape[0]}")
    if threshold is not None:
        return (arr > threshold).astype(np.uint8)
    return arr
__all__ = ["READERS", "DicomReader", "ItkReader", "NiftiReader", "RasterReader", "Reader", "read_labelmap_2d"]
