"""The demo's sources, assembled offline into a folder with a manifest.

- real DICOM files from ``pydicom-data`` when it is installed (CT, MR, a
  MONOCHROME1 chest radiograph, ultrasound);
- synthetic phantoms, named ``synthetic-*`` in ``source``: a CT volume with liver
  and lesion label maps (NIfTI), dermoscopy-like images with lesion masks (PNG),
  and fundus-like images with a box table and a metadata CSV.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

DICOM_FILES = ("CT_small.dcm", "693_UNCR.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm", "US1_UNCR.dcm")
SEED = 25


def _ellipsoid(shape: tuple[int, ...], center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
    return np.asarray(distance <= 1.0)


def ct_phantom(folder: Path, rng: np.random.Generator) -> dict:
    """A 128x128x48 abdomen-like CT volume in HU with liver (1) and lesion (2) labels."""
    from builder.imaging import nibabel

    nib = nibabel()

    shape = (128, 128, 48)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = _ellipsoid(shape, (64, 64, 24), (56, 44, 60))
    hu[body] = 30.0
    liver = _ellipsoid(shape, (84, 60, 24), (26, 22, 18)) & body  # RAS+: high x is the patient's right
    hu[liver] = 60.0
    lesion = _ellipsoid(shape, (90, 66, 26), (7, 6, 5))
    hu[lesion] = 15.0
    spine = _ellipsoid(shape, (64, 30, 24), (8, 8, 60))
    hu[spine] = 500.0
    hu += rng.normal(0, 8, shape).astype(np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[liver] = 1
    labels[lesion] = 2
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), folder / "abdomen_ct.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "abdomen_ct_seg.nii.gz")
    return {
        "name": "synthetic-ct-phantom", "format": "nifti", "images": "phantom/abdomen_ct.nii.gz",
        "masks": "phantom/*_seg.nii.gz", "labels": {1: "liver", 2: "hypodense lesion"},
        "modality": "ct", "organ": "abdomen", "disease": "synthetic liver lesion",
        "finding_labels": ["hypodense lesion"],  # a slice states the lesion only where it shows it
        "license": "CC0-1.0", "slicing": {"plane": "axial", "step": 4, "only_with_roi": True},
    }


def skin_phantoms(folder: Path, rng: np.random.Generator, n: int = 6) -> dict:
    """Dermoscopy-like RGB images, each with a pigmented lesion and its mask."""
    for i in range(n):
        size = 192
        base = np.array([222, 178, 150], dtype=np.float32) + rng.normal(0, 4, (size, size, 3))
        center = rng.uniform(60, 130, 2)
        radii = rng.uniform(18, 40, 2)
        lesion = _ellipsoid((size, size), tuple(center), tuple(radii))
        base[lesion] = np.array([110, 70, 50]) + rng.normal(0, 12, (int(lesion.sum()), 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"skin_{i:02d}.png")
        Image.fromarray(lesion.astype(np.uint8)).save(folder / f"skin_{i:02d}_mask.png")
    return {
        "name": "synthetic-dermoscopy", "format": "image", "images": "skin/skin_??.png",
        "masks": "skin/*_mask.png", "labels": {1: "pigmented lesion"}, "modality": "dermoscopy",
        "organ": "skin", "disease": "synthetic pigmented lesion", "license": "CC0-1.0",
    }


def fundus_phantoms(folder: Path, rng: np.random.Generator, n: int = 4) -> dict:
    """Fundus-like RGB images with an optic-disc box and a metadata table."""
    boxes, meta = [], []
    for i in range(n):
        size = 160
        disc = _ellipsoid((size, size), (size / 2, size / 2), (size / 2 - 4, size / 2 - 4))
        img = np.zeros((size, size, 3), dtype=np.float32)
        img[disc] = [180, 60, 30]
        eye = "left" if i % 2 else "right"
        # the optic disc sits nasally: on the image's right for a right eye, on its left for a left eye
        cx, cy = (rng.uniform(100, 125) if eye == "right" else rng.uniform(35, 60)), rng.uniform(60, 100)
        optic = _ellipsoid((size, size), (cy, cx), (12, 12))
        img[optic] = [250, 220, 150]
        img += rng.normal(0, 5, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"eye_{i:02d}.png")
        boxes.append({"image": f"eye_{i:02d}.png", "x_min": round(cx - 12), "y_min": round(cy - 12),
                      "x_max": round(cx + 13), "y_max": round(cy + 13), "label": "optic disc"})
        meta.append({"image": f"eye_{i:02d}", "eye": eye,
                     "diagnosis": "synthetic normal fundus"})
    for name, rows in (("boxes.csv", boxes), ("metadata.csv", meta)):
        with open(folder / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return {
        "name": "synthetic-fundus", "format": "image", "images": "fundus/eye_*.png",
        "boxes": "fundus/boxes.csv", "metadata": "fundus/metadata.csv", "modality": "fundus",
        "organ": "retina", "disease": "{diagnosis}",
        "caption": "{modality_name} of the {eye} {organ}[, {disease}][; regions: {regions}]",
        "license": "CC0-1.0",
    }


def dicom_samples(folder: Path) -> dict | None:
    """Real DICOM files from pydicom-data, if it is installed."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        return None
    found = 0
    for name in DICOM_FILES:
        try:
            path = get_testdata_file(name, download=False)  # the installed data: never the network
        except Exception:  # pydicom-data absent: get_testdata_file tries to download
            path = None
        if path:
            shutil.copy(path, folder / name)
            found += 1
    if not found:
        return None
    return {"name": "pydicom-data", "format": "dicom", "images": "dicom/*.dcm",
            "license": "see pydicom-data (test files of pydicom)"}


def assemble(root: Path) -> Path:
    """Write the demo sources and their manifest under ``root``; return the manifest."""
    rng = np.random.default_rng(SEED)
    sources = []
    for sub, make in (("dicom", dicom_samples), ("phantom", lambda f: ct_phantom(f, rng)),
                      ("skin", lambda f: skin_phantoms(f, rng)), ("fundus", lambda f: fundus_phantoms(f, rng))):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        entry = make(folder)
        if entry:
            sources.append(entry)
    manifest = root / "sources.yaml"
    manifest.write_text(yaml.safe_dump({"sources": sources}, sort_keys=False), encoding="utf-8")
    return manifest
