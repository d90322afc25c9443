"""Small hostile files that would take a lot of memory: written in chunks, never held in memory here."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

CHUNK = 1 << 24


def nifti_bomb(path: Path, shape: tuple[int, int, int] = (1024, 1024, 480), slope: float = 2.0) -> Path:
    """A .nii.gz of int16 zeros (with a bright band) and a scl_slope: ~1 MB on disk, 1 GiB of voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_slope_inter(slope, -1.0)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    total = int(np.prod(shape)) * 2
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(header.binaryblock + b"\0" * (352 - len(header.binaryblock)))
        fh.write(np.full(1 << 15, 1000, np.int16).tobytes())  # a bright band in the first slice
        zeros = bytes(CHUNK)
        written = 1 << 16
        while written < total:
            step = min(CHUNK, total - written)
            fh.write(zeros[:step])
            written += step
    return path


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _meta(transfer_syntax: str) -> bytes:
    ts = transfer_syntax.encode() + (b"\0" if len(transfer_syntax) % 2 else b"")
    sop = b"1.2.840.10008.5.1.4.1.1.7\0"
    body = (_element(0x0002, 0x0001, b"OB", b"\0\1") + _element(0x0002, 0x0002, b"UI", sop)
            + _element(0x0002, 0x0003, b"UI", b"1.2.3.4\0") + _element(0x0002, 0x0010, b"UI", ts))
    return b"\0" * 128 + b"DICM" + _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(body))) + body


def deflated_bomb(path: Path, private_bytes: int = 900 * 2**20, rows: int = 128) -> Path:
    """A Deflated Explicit VR file declaring 128x128 but holding a 900 MiB private element of zeros."""
    head = (_element(0x0008, 0x0060, b"CS", b"CT") + _element(0x0011, 0x0010, b"LO", b"ACME BOMB ")
            + struct.pack("<HH2sHI", 0x0011, 0x1001, b"OB", 0, private_bytes))
    tail = (_element(0x0028, 0x0002, b"US", struct.pack("<H", 1))
            + _element(0x0028, 0x0004, b"CS", b"MONOCHROME2 ")
            + _element(0x0028, 0x0010, b"US", struct.pack("<H", rows))
            + _element(0x0028, 0x0011, b"US", struct.pack("<H", rows))
            + _element(0x0028, 0x0100, b"US", struct.pack("<H", 16))
            + _element(0x0028, 0x0101, b"US", struct.pack("<H", 16))
            + _element(0x0028, 0x0102, b"US", struct.pack("<H", 15))
            + _element(0x0028, 0x0103, b"US", struct.pack("<H", 0))
            + _element(0x7FE0, 0x0010, b"OW", bytes(rows * rows * 2)))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as fh:
        fh.write(_meta("1.2.840.10008.1.2.1.99"))
        fh.write(deflater.compress(head))
        zeros = bytes(CHUNK)
        left = private_bytes
        while left:
            step = min(CHUNK, left)
            fh.write(deflater.compress(zeros[:step]))
            left -= step
        fh.write(deflater.compress(tail) + deflater.flush())
    return path
