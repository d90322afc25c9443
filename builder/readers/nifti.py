"""NIfTI with nibabel: whole volume loaded once, reoriented to RAS+.

Slices are returned in radiological display orientation, the convention of the
stored images (see the dataset card):

- axial: anterior at the top, the patient's right on the image's left;
- coronal: superior at the top, the patient's right on the image's left;
- sagittal: superior at the top, anterior on the image's left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Reject

#: Volume axis that each plane slices across (RAS+: x=R, y=A, z=S).
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
MAX_VOXELS = 1024**3 // 2  # 512 Mi voxels: larger volumes are refused, not swapped


def n_slices(shape: tuple[int, ...], plane: str) -> int:
    return int(shape[PLANE_AXIS[plane]])


def slice_display(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """Slice ``index`` of a RAS+ volume across ``plane``, as displayed (rows, cols)."""
    if plane == "axial":
        section = volume[:, :, index]  # (x, y)
    elif plane == "coronal":
        section = volume[:, index, :]  # (x, z)
    else:
        section = volume[index, :, :]  # (y, z)
    # rows: the second axis reversed (A or S at the top); columns: the first axis reversed
    return np.ascontiguousarray(section[::-1, ::-1].T)


@dataclass(frozen=True)
class NiftiReader:
    suffixes: tuple[str, ...] = (".nii", ".nii.gz")

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        import nibabel as nib

        try:
            img = nib.as_closest_canonical(nib.load(str(path)))
            shape = tuple(int(s) for s in img.shape)
            while len(shape) > 3 and shape[-1] == 1:
                shape = shape[:-1]
            if len(shape) != 3:
                raise Reject("read", f"expected a 3D volume, got shape {tuple(img.shape)}")
            if int(np.prod(shape)) > MAX_VOXELS:
                raise Reject("read", f"volume of {shape} voxels exceeds the limit of {MAX_VOXELS}")
            volume = np.asanyarray(img.dataobj).reshape(shape)
        except Reject:
            raise
        except Exception as exc:
            raise Reject("read", f"not a readable NIfTI volume ({type(exc).__name__}: {exc})") from None
        if volume.dtype.kind == "f":
            bad = int(np.count_nonzero(~np.isfinite(volume)))
            if bad:
                raise Reject("read", f"{bad} voxels are NaN or infinite")
        elif volume.dtype.kind not in "iub":
            raise Reject("read", f"unsupported voxel type {volume.dtype}")
        meta = {
            "affine": np.round(img.affine, 6).tolist(),
            "zooms": [float(z) for z in img.header.get_zooms()[:3]],
        }
        return volume, meta
