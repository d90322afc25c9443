"""NIfTI with nibabel: stored voxels loaded once, reoriented to RAS+ as a view; 3D or 4D.

Slices are returned in radiological display orientation, the convention of the
stored images (see the dataset card):

- axial: anterior at the top, the patient's right on the image's left;
- coronal: superior at the top, the patient's right on the image's left;
- sagittal: superior at the top, anterior on the image's left.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from builder.errors import Reject
from builder.imaging import nibabel, rescaled

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


MAX_IN_MEMORY = 1024**3  # bytes of stored voxels a volume may hold: the peak of a worker is about this plus slices
MAX_VALUE = 1e30  # scaled values beyond this are not a scanner's
CHUNK = 1 << 24  # voxels per pass of the finiteness check


def finite_count(volume: np.ndarray) -> int:
    """Non-finite voxels, counted in chunks (no volume-sized temporary)."""
    if volume.dtype.kind != "f":
        return 0
    flat = volume.reshape(-1) if volume.flags.c_contiguous or volume.flags.f_contiguous else None
    chunks = (flat[i:i + CHUNK] for i in range(0, flat.size, CHUNK)) if flat is not None else iter(volume)
    return sum(int(np.count_nonzero(~np.isfinite(chunk))) for chunk in chunks)


def _scale(header: Any, raw: np.ndarray) -> tuple[float, float]:
    """The header's (slope, intercept), refused when it makes the values meaningless."""
    slope, inter = header.get_slope_inter() if hasattr(header, "get_slope_inter") else (None, None)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if raw.dtype.kind in "iub" and raw.size:
        info = np.iinfo(raw.dtype) if raw.dtype.kind != "b" else None
        top = max(abs(int(info.min)), abs(int(info.max))) if info else 1
        if abs(slope) * top + abs(inter) > MAX_VALUE:
            raise Reject("read", f"scl_slope {slope} / scl_inter {inter} give values beyond {MAX_VALUE:g}")
    return slope, inter


@lru_cache(maxsize=1)
def _fast_gunzip() -> Callable[[str], Any] | None:
    """``isal.igzip.open`` where installed (the ``[fast]`` extra): Intel's ISA-L inflates gzip about 1.5x as fast
    as zlib (2x Python's ``gzip`` module), the same bytes; else None and nibabel's own gzip reader is used."""
    if importlib.util.find_spec("isal") is None:
        return None
    from isal import igzip

    return igzip.open


READ_CHUNK = 1 << 24  # bytes inflated per call into the volume's own buffer


def _unscaled(proxy: Any, path: Path, gzipped: bool) -> np.ndarray:
    """The stored voxels as an array; a ``.nii.gz`` is inflated straight into the array, a chunk at a time (ISA-L
    where installed, else zlib): no second volume-sized buffer, so the peak is the volume itself.

    The offset, shape, type and order are nibabel's (its ``ArrayProxy``); only the gzip stream is another's.
    """
    import gzip

    from nibabel.arrayproxy import ArrayProxy

    if not gzipped or type(proxy) is not ArrayProxy:
        return proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else np.asanyarray(proxy)
    voxels = np.empty(int(np.prod(proxy.shape)), dtype=proxy.dtype)
    target = memoryview(voxels).cast("B")  # type: ignore[arg-type]  # ndarray is a buffer
    with (_fast_gunzip() or gzip.open)(str(path)) as stream:
        stream.seek(proxy.offset)
        done = 0
        while done < target.nbytes:
            count = stream.readinto(target[done:done + READ_CHUNK])
            if not count:
                raise Reject("read", f"the file ends after {done} of the {target.nbytes} bytes of voxels its header "
                                     "declares (truncated)")
            done += count
    return voxels.reshape(proxy.shape, order=proxy.order)


@dataclass(frozen=True)
class NiftiReader:
    """Stored voxels, reoriented to RAS+ as a view (no copy, no float64); ``meta['scale']`` to apply per slice."""

    suffixes: tuple[str, ...] = (".nii", ".nii.gz")

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        nib = nibabel()  # without pydicom (builder.imaging)
        try:
            img: Any = nib.load(str(path))
            shape = tuple(int(s) for s in img.shape)
            while len(shape) > 4 and shape[-1] == 1:
                shape = shape[:-1]
            if len(shape) == 4 and shape[-1] == 1:
                shape = shape[:3]
            if len(shape) not in (3, 4):
                raise Reject("read", f"expected a 3D volume or a 4D series, got shape {tuple(img.shape)}")
            check_size(shape, img.get_data_dtype().itemsize)
            gzipped = str(path).lower().endswith(".gz")
            raw = np.asarray(_unscaled(img.dataobj, path, gzipped)).reshape(shape)
            volume, canonical = ras(raw, img.affine)
        except Reject:
            raise
        except MemoryError:
            raise Reject("read", "out of memory while reading the volume") from None
        except Exception as exc:
            raise Reject("read", f"not a readable NIfTI volume ({type(exc).__name__}: {exc})") from None
        return volume, volume_meta(volume, canonical, _scale(img.header, volume))


def ras(raw: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxels whose axes are the nearest to RAS+ (a view: axes swapped and flipped, no copy), and their affine."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    return apply_orientation(raw, ornt), affine @ inv_ornt_aff(ornt, raw.shape[:3])


def volume_meta(volume: np.ndarray, canonical: np.ndarray, scale: tuple[float, float]) -> dict[str, Any]:
    """What a volume reader says of a RAS+ volume: its affine, voxel sizes, value scale, non-finite voxels."""
    if volume.dtype.kind not in "iubf":
        raise Reject("read", f"unsupported voxel type {volume.dtype}")
    return {
        "affine": np.round(canonical, 6).tolist(),
        "zooms": [float(z) for z in np.linalg.norm(canonical[:3, :3], axis=0)],  # RAS+ axes, mm
        "scale": scale,
        "nonfinite": finite_count(volume),  # NaN or infinite voxels: the source's policy decides
    }


def check_size(shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse a volume too large to hold: by voxels, then by the bytes of its stored voxels."""
    if int(np.prod(shape)) > MAX_VOXELS:
        raise Reject("read", f"volume of {shape} voxels exceeds the limit of {MAX_VOXELS}")
    stored = int(np.prod(shape)) * itemsize
    if stored > MAX_IN_MEMORY:
        raise Reject("read", f"the volume's voxels take {stored / 2**30:.2f} GiB, over the limit of "
                             f"{MAX_IN_MEMORY / 2**30:.0f} GiB")


def scaled(values: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Stored values times slope plus intercept, in float32 (a slice or a sample, never the volume)."""
    return rescaled(values, *scale)


def sample(volume: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    """A strided sample of a volume's voxels, for a window's percentiles."""
    step = max(1, int(np.ceil((volume.size / limit) ** (1 / 3))))
    return np.ascontiguousarray(volume[::step, ::step, ::step])


def slice_spacing(zooms: list[float], plane: str) -> tuple[float, float]:
    """(row, column) spacing in mm of a displayed slice (see :func:`slice_display`)."""
    x, y, z = zooms
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[plane]
