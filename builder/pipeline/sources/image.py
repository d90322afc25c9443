"""``format: image``: PNG, JPEG, TIFF and BMP files, each one sample; masks are label-map images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from builder.imaging import RASTER_SUFFIXES
from builder.pipeline.data import Record, Unit
from builder.pipeline.readers import READERS, read_labelmap_2d
from builder.pipeline.readers.display import for_display
from builder.pipeline.sources.base import FileSource
from builder.pipeline.sources.options import ImageOptions

__all__ = ["ImageSource"]


@dataclass(frozen=True)
class ImageSource(FileSource):
    """PNG/JPEG/TIFF images, each one sample; masks are label-map images."""

    options = ImageOptions
    suffixes = RASTER_SUFFIXES  # other files a glob matches (notes, tables) are counted side files

    def records(self, unit: Unit) -> Iterator[Record]:
        pixels, _ = READERS["image"].read(unit.image)
        if unit.spec.options.bit_depth == "display":
            pixels = for_display(pixels)
        labelmap = read_labelmap_2d(unit.mask, pixels.shape[:2], unit.spec.options.mask_threshold) if unit.mask \
            else None
        yield Record(unit=unit, pixels=pixels, labelmap=labelmap, modality=unit.spec.modality or "")
