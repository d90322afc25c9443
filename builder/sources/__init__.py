"""Sources: the manifest, and adapters from input files to 2D records.

``ADAPTERS`` maps a manifest ``format`` to its adapter; a new format is one
entry here and a class with ``records(unit)``.
"""

from __future__ import annotations

from .base import Record, SourceAdapter, Unit, enumerate_units
from .adapters import DicomSource, ImageSource, NiftiSource
from .medpix import MedpixSource

ADAPTERS: dict[str, SourceAdapter] = {
    "dicom": DicomSource(),
    "nifti": NiftiSource(),
    "image": ImageSource(),
    "medpix": MedpixSource(),
}

__all__ = ["ADAPTERS", "Record", "SourceAdapter", "Unit", "enumerate_units"]
