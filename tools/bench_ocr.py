"""Burned-in text found by OCR: recall of text planted as scanners burn it, false finds on clean real images.

    python tools/bench_ocr.py [--per-image 3] [--tesseract]

Clean real images of several modalities, none holding text: Colin27's T1 MRI
(axial, coronal and sagittal slices), nibabel's and pydicom's CT and MR test
files, and the real chest radiographs of ``intake-dev/nih-chestxray14`` (at least
128 pixels a side: a scanner's smallest matrix; a line of identifiers does not fit
in pydicom's 64x64 test images). On each,
``--per-image`` copies get one line of identifiers planted as a scanner burns
them: a font of DejaVu or Liberation (sans, mono, bold), a size scaled to the
image (from 1/40 to 1/14 of its height), a corner, and one of three styles:
white, inverted (dark text on a light box, as workstation labels are) or low
contrast (50 grey levels above the brightest background under the line).

A planted line counts as found when the build's detector
(:func:`builder.pipeline.readers.ocr.find_text`) decides the image holds text
and its redacted boxes cover at least 80% of the line's box. A false find is a
clean image on which it decides there is text. With ``--tesseract``, Debian's
Tesseract (``tesseract-ocr``) is measured the same way: a word of at least 3
letters or digits at confidence 50 or more, its word boxes redacted.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
FONTS = sorted(str(p) for p in Path("/usr/share/fonts/truetype").rglob("*.ttf")
               if any(k in p.name for k in ("DejaVuSans", "LiberationSans-Regular", "LiberationMono-Regular")))
LINES = ("DOE JOHN MRN55555", "SMITH^JANE 1961-04-02", "ID 4471203 F 63Y", "ST. MARY HOSPITAL", "ACC 88321 12:44:09")
Box = tuple[int, int, int, int]
MIN_SIDE = 128  # images smaller than a scanner's smallest matrix (test files of 33x41, 64x64) hold no line of text


def _grey(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float32)
    low, high = np.percentile(values, (0.5, 99.5))
    return (255 * np.clip((values - low) / max(high - low, 1e-6), 0, 1)).astype(np.uint8)


def clean_images() -> list[tuple[str, np.ndarray]]:
    """Real images without text: (where it is from, 8-bit grey)."""
    import nibabel as nib
    import pydicom
    from pydicom.data import get_testdata_file

    found: list[tuple[str, np.ndarray]] = []
    volume = np.asarray(nib.as_closest_canonical(nib.load(SHARED / "colin27-aal" / "ch2.nii.gz")).dataobj)
    for axis, name in ((2, "axial"), (1, "coronal"), (0, "sagittal")):
        for index in range(30, volume.shape[axis] - 30, 12):
            found.append((f"colin27 {name} {index}", _grey(np.take(volume, index, axis=axis).T[::-1])))
    from nibabel.testing import data_path

    for name in ("example4d.nii.gz", "anatomical.nii"):
        data = np.asarray(nib.load(Path(str(data_path)) / name).dataobj)  # type: ignore[attr-defined]
        data = data[..., 0] if data.ndim == 4 else data
        found.append((f"nibabel {name}", _grey(data[:, :, data.shape[2] // 2].T)))
    for name in ("CT_small.dcm", "MR_small.dcm", "MR2_J2KI.dcm", "emri_small.dcm"):
        pixels = pydicom.dcmread(str(get_testdata_file(name))).pixel_array
        found.append((f"pydicom {name}", _grey(pixels if pixels.ndim == 2 else pixels[0])))
    for path in sorted((SHARED / "intake-dev" / "nih-chestxray14").rglob("*.png")):
        found.append((f"nih {path.name}", _grey(np.asarray(Image.open(path).convert("L")))))
    return [(name, image) for name, image in found if min(image.shape[:2]) >= MIN_SIDE]


def plant(image: np.ndarray, rng: random.Random, style: str) -> tuple[np.ndarray, Box]:
    """One line of identifiers burned into a corner; the line's box."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    text, face = rng.choice(LINES), rng.choice(FONTS)
    size = max(7, int(height / rng.uniform(14, 40)))
    while True:
        font = ImageFont.truetype(face, size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= width - 8 or size <= 7:
            break
        size -= 1
    line_w, line_h = right - left, bottom - top
    corner = rng.choice(("tl", "tr", "bl", "br"))
    x = 4 if corner[1] == "l" else max(0, width - line_w - 4)
    y = 4 if corner[0] == "t" else max(0, height - line_h - 4)
    box = (int(x), int(y), int(min(width, x + line_w)), int(min(height, y + line_h)))
    if style == "inverted":
        draw.rectangle((x - 2, y - 2, x + line_w + 2, y + line_h + 2), fill=230)
        fill = 12
    elif style == "low":
        under = image[box[1]:box[3], box[0]:box[2]]
        fill = min(255, int(np.percentile(under, 90)) + 50) if under.size else 60
    else:
        fill = 255
    draw.text((x - left, y - top), text, fill=fill, font=font)
    return np.asarray(canvas), box


def covered(boxes: list[Box], target: Box, shape: tuple[int, ...]) -> bool:
    mask = np.zeros(shape[:2], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    x0, y0, x1, y1 = target
    return bool(mask[y0:y1, x0:x1].mean() >= 0.8)


def rapidocr(image: np.ndarray) -> list[Box]:
    from builder.pipeline.readers.ocr import find_text

    return list(find_text(image).boxes)


def tesseract(image: np.ndarray) -> list[Box]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.png"
        Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2)).save(path)
        tsv = subprocess.run(["tesseract", str(path), "-", "--psm", "11", "tsv"], capture_output=True, text=True,
                             check=False).stdout
    boxes, text = [], False
    for line in tsv.splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) < 12 or not cells[11].strip():
            continue
        x, y, w, h = (int(c) // 2 for c in cells[6:10])
        boxes.append((max(0, x - 2), max(0, y - 2), x + w + 2, y + h + 2))
        text |= float(cells[10]) >= 50 and sum(c.isalnum() for c in cells[11]) >= 3
    return boxes if text else []


def measure(detector: Callable[[np.ndarray], list[Box]], images: list[tuple[str, np.ndarray]],
            per_image: int) -> dict[str, object]:
    rng = random.Random(0)
    found: dict[str, list[bool]] = {"white": [], "inverted": [], "low": []}
    started = time.perf_counter()
    calls = 0
    for _, image in images:
        for n in range(per_image):
            style = ("white", "inverted", "low")[n % 3]
            planted, box = plant(image, rng, style)
            found[style].append(covered(detector(planted), box, planted.shape))
            calls += 1
    false = [name for name, image in images if detector(image)]
    calls += len(images)
    hits = [v for values in found.values() for v in values]
    return {"images": len(images), "planted": len(hits), "recall": round(sum(hits) / len(hits), 4),
            "recall_by_style": {k: round(sum(v) / len(v), 4) for k, v in found.items() if v},
            "false_finds": len(false), "false_rate": round(len(false) / len(images), 4), "false_on": false[:10],
            "seconds_per_image": round((time.perf_counter() - started) / calls, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-image", type=int, default=3)
    parser.add_argument("--tesseract", action="store_true", help="measure Debian's Tesseract the same way")
    args = parser.parse_args()
    images = clean_images()
    report = {"rapidocr": measure(rapidocr, images, args.per_image)}
    if args.tesseract:
        report["tesseract"] = measure(tesseract, images, args.per_image)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
