"""DICOM with pydicom: per-frame modality LUT, VOI windows, MONOCHROME1, multi-frame, mosaics.

``read`` gives modality values ``(F, H, W)`` in float32 (RGB: uint8) and, per
frame, the header's window (center, width, function), plane and pixel spacing
(:mod:`builder.pipeline.readers.frames`); the adapter displays them.

Only the attributes in :data:`ALLOWED_ATTRIBUTES` are read into ``meta``: no
name, id, date, institution or private tag can reach a row. Compressed transfer
syntaxes decode when ``pylibjpeg`` and its plugins are installed (the
``codecs`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import Reject
from builder.imaging import rescaled
from builder.pipeline.readers.frames import FrameAttributes, demosaic, first_number, frame_attributes, mosaic_tiles
from builder.vocabulary import sequence_of

#: The header attributes a build may use. Nothing else is copied anywhere.
ALLOWED_ATTRIBUTES: tuple[str, ...] = (
    "Modality",
    "BodyPartExamined",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "BitsStored",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PixelSpacing",
    "SliceThickness",
    "ImageOrientationPatient",
    "ImagePositionPatient",  # geometry only: orders the slices of a series read as one volume
    "WindowCenter",
    "WindowWidth",
    "BurnedInAnnotation",
)
PLANE_BY_AXIS = ("sagittal", "coronal", "axial")
#: DICOM objects that hold no image to build rows from: counted as skipped, by kind.
NOT_IMAGES = frozenset({"RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "SR", "PR", "KO", "REG", "FID", "DOC", "PLAN",
                        "RWV", "HC", "AU", "ECG", "EPS", "HD"})
MAX_PIXELS = 2**28  # pixel values a file may declare (rows x columns x frames x samples)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def plane_of(orientation: Any) -> str | None:
    """axial/coronal/sagittal from ImageOrientationPatient (row and column cosines)."""
    try:
        row, col = np.asarray(orientation, dtype=float).reshape(2, 3)
    except (TypeError, ValueError):
        return None
    normal = np.abs(np.cross(row, col))
    return PLANE_BY_AXIS[int(np.argmax(normal))] if normal.any() else None


MAX_INFLATED = 512 * 1024**2  # bytes a deflated dataset may inflate to
DEFER = 16 * 1024**2  # elements larger than this are read only when used (PixelData)
MAX_SLOPE = 1e6  # a rescale slope beyond this (or NaN) is not a scanner's


def _inflated_size(path: Path, limit: int) -> int | None:
    """For a Deflated Explicit VR file, the inflated size of its dataset (stopping past ``limit``)."""
    import zlib

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with open(path, "rb") as fh:
        pydicom.filereader.read_preamble(fh, force=True)
        meta = pydicom.filereader._read_file_meta_info(fh)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return None
        inflater, size = zlib.decompressobj(-zlib.MAX_WBITS), 0
        for block in iter(lambda: fh.read(1 << 16), b""):
            size += len(inflater.decompress(block, limit + 1 - size))
            while inflater.unconsumed_tail and size <= limit:
                size += len(inflater.decompress(inflater.unconsumed_tail, limit + 1 - size))
            if size > limit:
                break
        return size


def _open(path: Path) -> Any:
    """The dataset, refusing a deflated file that would inflate past :data:`MAX_INFLATED`."""
    import pydicom

    try:
        size = _inflated_size(path, MAX_INFLATED)
    except Exception:  # not a DICOM file meta: dcmread says why below
        size = None
    if size is not None and size > MAX_INFLATED:
        raise Reject("read", f"deflated dataset inflates past the limit of {MAX_INFLATED // 2**20} MiB")
    try:
        return pydicom.dcmread(str(path), defer_size=None if size is not None else DEFER)
    except pydicom.errors.InvalidDicomError:
        # a dataset written without the 128-byte preamble and file meta (older tools, pydicom's own rtstruct.dcm):
        # read as such only when what follows is a dataset (it names its SOP class or modality)
        ds = pydicom.dcmread(str(path), defer_size=DEFER, force=True)
        if "SOPClassUID" not in ds and "Modality" not in ds:
            raise
        return ds


def _check_rescale(attrs: FrameAttributes) -> None:
    slope, intercept = attrs.slope, attrs.intercept
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0 or abs(slope) > MAX_SLOPE:
        raise Reject("read", f"rescale slope {slope} / intercept {intercept} is not a usable linear rescale")


def _modality_lut(pixels: np.ndarray, ds: Any, frames: list[FrameAttributes]) -> np.ndarray:
    """Stored values (F, H, W) to modality values in float32, each frame with its own rescale."""
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in ds:
        try:
            values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
        except Exception as exc:  # a malformed LUT (empty descriptor...) is bad input, not a bug
            raise Reject("read", f"unusable Modality LUT Sequence ({type(exc).__name__}: {exc})") from None
    else:
        values = np.empty(pixels.shape, dtype=np.float32)
        for index, attrs in enumerate(frames):
            _check_rescale(attrs)
            values[index] = rescaled(pixels[index], attrs.slope, attrs.intercept)
    if not np.isfinite(values).all():
        raise Reject("read", "the modality LUT gives NaN or infinite values")
    return values


def _voi_lut(values: np.ndarray, ds: Any) -> np.ndarray | None:
    """Values through the top-level VOI LUT Sequence, scaled to 0..255 (None: there is none)."""
    from pydicom.pixels import apply_voi_lut

    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    try:
        bits = int(sequence[0].LUTDescriptor[2])
        out = np.asarray(apply_voi_lut(values, ds, index=0, prefer_lut=True), dtype=np.float32)
    except Exception as exc:
        raise Reject("read", f"unusable VOI LUT Sequence ({type(exc).__name__}: {exc})") from None
    return out * np.float32(255.0 / max(2**bits - 1, 1))


@dataclass(frozen=True)
class DicomReader:
    suffixes: tuple[str, ...] = (".dcm", ".dicom")
    allow_burned_in: bool = False

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        from pydicom.pixels import apply_color_lut

        from builder.pipeline.readers import ocr
        from builder.pipeline.readers.bodypart import body_part
        from builder.pipeline.readers.screen import burned_in_flag, clean, screen, vouched

        try:
            ds = _open(path)
        except Reject:
            raise
        except MemoryError:
            raise Reject("read", "out of memory while reading the header") from None
        except Exception as exc:  # pydicom raises many types for broken files
            raise Reject("read", f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
        meta = {key: _plain(ds.get(key)) for key in ALLOWED_ATTRIBUTES if ds.get(key) not in (None, "")}
        kind = str(meta.get("Modality", "")).strip().upper()
        if kind in NOT_IMAGES or kind == "RTSTRUCT":  # beside the images in the same folders: counted, not rejects
            raise Reject("read", f"a DICOM {kind} object holds no image", skipped=f"DICOM {kind} (not an image)")
        if burned_in_flag(ds) and not self.allow_burned_in:
            raise Reject("privacy", "BurnedInAnnotation is YES (text may be burned into pixels)")
        screening = screen(ds)
        looked_at = ocr.available()  # the pixels screened by OCR: deid's flag without a region is left to it
        if screening.refusal and not self.allow_burned_in and not (screening.regions_unknown and looked_at):
            raise Reject("privacy", screening.refusal)
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise Reject("read", "DICOM file holds no pixel data")
        declared = 1
        for key in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel"):
            declared *= max(1, int(first_number(meta.get(key)) or 1))
        if declared > MAX_PIXELS:
            raise Reject("read", f"declared size of {declared} pixel values exceeds the limit of {MAX_PIXELS}")
        try:
            pixels = ds.pixel_array
        except MemoryError:
            raise Reject("read", "out of memory while decoding pixel data") from None
        except Exception as exc:
            raise Reject("read", f"cannot decode pixel data ({type(exc).__name__}: {exc})") from None
        photometric = str(meta.get("PhotometricInterpretation", "MONOCHROME2")).strip()
        frames = int(first_number(meta.get("NumberOfFrames")) or 1)
        if photometric == "PALETTE COLOR":
            pixels, photometric = _palette(apply_color_lut(pixels, ds), ds), "RGB"
        color = (pixels.shape[-1] == 3 and int(meta.get("SamplesPerPixel", 1)) == 3) or photometric == "RGB"
        if color and pixels.dtype != np.uint8:  # 16-bit colour samples: their top 8 bits
            bits = int(first_number(meta.get("BitsStored")) or 8 * pixels.dtype.itemsize)
            pixels = (np.asarray(pixels).astype(np.uint32) >> max(0, bits - 8)).clip(0, 255).astype(np.uint8)
        if pixels.ndim == (3 if color else 2):
            pixels = pixels[None]
        if pixels.shape[0] != frames and frames > 1:
            raise Reject("read", f"NumberOfFrames is {frames} but pixel data holds {pixels.shape[0]}")
        attributes = [frame_attributes(ds, i) for i in range(pixels.shape[0])]
        windows: list[Any] = [(a.window[0], a.window[1], a.function) if a.window else None for a in attributes]
        if not color:
            pixels = _modality_lut(pixels, ds, attributes)
            through_lut = None if any(windows) else _voi_lut(pixels, ds)
            if through_lut is not None:  # already 0..255: the identity window keeps it
                pixels, windows = through_lut, [(127.5, 255.0, "LINEAR_EXACT")] * len(windows)
        mosaic = mosaic_tiles(ds) if pixels.shape[0] == 1 and not color else 0
        if mosaic:
            pixels = demosaic(pixels[0], mosaic)
            attributes, windows = attributes * mosaic, windows * mosaic
        notes: dict[str, int] = {}
        if screening.boxes:
            pixels = clean(pixels, screening.boxes)
            notes["pixels_cleaned_by_deid"] = 1
        organ = body_part(ds.get("BodyPartExamined"))
        if ds.get("BodyPartExamined") and organ is None:
            notes["body_part_unmapped"] = 1
        if mosaic:
            notes["mosaic_slices"] = mosaic
        meta.update(
            windows=windows,
            invert=photometric == "MONOCHROME1",
            color=bool(color),
            planes=[plane_of(a.orientation) for a in attributes],
            spacing=[list(a.spacing) if a.spacing else None for a in attributes],
            mosaic=mosaic,
            cine=_is_cine(ds, pixels.shape[0]),
            organ=organ,
            screen_text=not vouched(ds) and not self.allow_burned_in,  # OCR looks at what the header does not vouch for
            # the MR sequence named by the series' descriptions, as a controlled term: the text itself is never kept
            sequence=sequence_of(*(ds.get(k) for k in ("SeriesDescription", "ProtocolName", "SequenceName")))
            if str(ds.get("Modality", "")).upper() == "MR" else None,
            notes=notes,
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")),  # pairs a SEG; never copied to a row
        )
        meta.pop("BodyPartExamined", None)  # only the controlled term may reach a row
        return pixels, meta


def _is_cine(ds: Any, frames: int) -> bool:
    """A clip of one view over time (ultrasound, angiography, endoscopy), not slices of a volume."""
    if frames <= 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return False
    timed = any(ds.get(key) not in (None, "") for key in ("CineRate", "FrameTime", "FrameTimeVector"))
    return timed or str(ds.get("Modality", "")).strip() in ("US", "XA", "RF", "ES", "IVUS")


def _palette(rgb: np.ndarray, ds: Any) -> np.ndarray:
    """PALETTE COLOR output as 8-bit RGB, scaled by the LUT's bit depth (its descriptor's third value)."""
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor") or [0, 0, 8]
    try:
        bits = int(descriptor[2])
    except (TypeError, ValueError, IndexError):
        bits = 8
    if bits > 8:
        return (np.asarray(rgb, dtype=np.uint32) >> (bits - 8)).astype(np.uint8)
    return np.asarray(rgb).astype(np.uint8)
