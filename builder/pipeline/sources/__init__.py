"""Sources: the manifest, and adapters from input files to 2D records.

``ADAPTERS`` maps a manifest ``format`` to its adapter; a new format is one
module with an adapter (``units(spec)``, ``records(unit)``) and its options
dataclass, registered here or through the ``medtrinity_25m.sources`` entry point.
"""

from __future__ import annotations

from builder.pipeline.data import Record, Unit
from builder.pipeline.sources.base import SourceAdapter, enumerate_units
from builder.pipeline.sources.coco import CocoSource
from builder.pipeline.sources.dicom import DicomSource
from builder.pipeline.sources.image import ImageSource
from builder.pipeline.sources.medpix import MedpixSource
from builder.pipeline.sources.medtrinity import MedtrinitySource
from builder.pipeline.sources.nnunet import NnunetSource
from builder.pipeline.sources.voc import VocSource
from builder.pipeline.sources.volume import VolumeSource
from builder.pipeline.sources.yolo import YoloSource
from builder.registry import Registry

ADAPTERS: Registry[SourceAdapter] = Registry("sources", {
    "dicom": DicomSource(),
    "volume": VolumeSource(),
    "nifti": VolumeSource(),  # the name volume had when it read NIfTI alone
    "nnunet": NnunetSource(),
    "coco": CocoSource(),
    "voc": VocSource(),
    "yolo": YoloSource(),
    "image": ImageSource(),
    "medpix": MedpixSource(),
    "medtrinity": MedtrinitySource(),
})

__all__ = ["ADAPTERS", "Record", "SourceAdapter", "Unit", "enumerate_units"]
