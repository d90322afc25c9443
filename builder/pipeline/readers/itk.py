"""NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) volumes with SimpleITK, as RAS+ volumes.

SimpleITK reads both formats with every encoding they use (raw, gzip, zlib
``.zraw``, detached data files), and gives the geometry from the file's own
header (NRRD ``space directions`` and ``space origin``, MetaImage
``TransformMatrix``, ``Offset`` and ``ElementSpacing``): ITK's physical space is
LPS, so the voxel-to-RAS affine is ``diag(-1, -1, 1) @ [direction x spacing | origin]``.
The volume is then reoriented to the nearest RAS+ axes as a NIfTI is
(:func:`builder.pipeline.readers.nifti.ras`), so slicing, display and masks are
the same whatever the format. Multi-component voxels (a vector per voxel) become a
4D series, the components last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import Reject
from builder.pipeline.readers.nifti import check_size, ras, volume_meta

__all__ = ["LPS_TO_RAS", "ItkReader"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitk() -> Any:
    try:
        import SimpleITK
    except ImportError:
        raise Reject("read", "NRRD and MetaImage volumes need SimpleITK (a dependency of medtrinity-25m: "
                             "pip install SimpleITK)") from None
    return SimpleITK


@dataclass(frozen=True)
class ItkReader:
    """NRRD and MetaImage volumes, reoriented to RAS+ as a view; ``meta`` as the NIfTI reader's."""

    suffixes: tuple[str, ...] = (".nrrd", ".nhdr", ".mha", ".mhd")

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        sitk = _sitk()
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
            size = tuple(int(s) for s in reader.GetSize())
            components = int(reader.GetNumberOfComponents())
            if len(size) not in (3, 4) or (len(size) == 4 and components > 1):
                raise Reject("read", f"expected a 3D volume or a 4D series, got size {size} with {components} "
                                     "component(s) per voxel")
            check_size((*size, components), _itemsize(sitk, reader.GetPixelID(), len(size), components))
            image = reader.Execute()
        except Reject:
            raise
        except MemoryError:
            raise Reject("read", "out of memory while reading the volume") from None
        except RuntimeError as exc:  # SimpleITK reports every reading problem as one
            raise Reject("read", f"not a readable volume ({_first_line(exc)})") from None
        raw = _voxels(sitk, image)
        volume, canonical = ras(raw, affine_of(image))
        return volume, volume_meta(volume, canonical, (1.0, 0.0))


def _itemsize(sitk: Any, pixel_id: int, dimension: int, components: int) -> int:
    """Bytes per voxel component of a pixel type, from a one-voxel image of that type (before the file is read)."""
    return int(sitk.GetArrayViewFromImage(sitk.Image([1] * dimension, pixel_id, components)).dtype.itemsize)


def _voxels(sitk: Any, image: Any) -> np.ndarray:
    """The voxels indexed (i, j, k[, t or component]): SimpleITK's arrays are (k, j, i)."""
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 4:
        return np.ascontiguousarray(array.transpose(3, 2, 1, 0))
    return array.transpose(2, 1, 0, 3) if array.ndim == 4 else array.transpose(2, 1, 0)


def affine_of(image: Any) -> np.ndarray:
    """The voxel (i, j, k) to RAS+ millimetre affine of a SimpleITK image (its first three axes)."""
    dimension = image.GetDimension()
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dimension, dimension)[:3, :3]
    spacing = np.array(image.GetSpacing()[:3], dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing  # column j scaled by the spacing of axis j
    lps[:3, 3] = image.GetOrigin()[:3]
    return LPS_TO_RAS @ lps


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "ERROR" in line or "rror" in line), lines[-1] if lines else "")
    return detail[:300]
