"""Draw a contact sheet of a built dataset: images with ROI boxes and mask overlay.

    python tools/preview.py OUT --config ct --n 12 --out preview.png
"""

from __future__ import annotations

import argparse

import numpy as np
from datasets import load_dataset
from PIL import Image, ImageDraw

COLOURS = [(255, 64, 64), (64, 255, 64), (64, 128, 255), (255, 200, 0), (255, 0, 255), (0, 255, 255)]


def tile(row: dict, size: int) -> Image.Image:
    img = row["image"].convert("RGB")
    if row["mask"] is not None:
        mask = np.asarray(row["mask"])
        rgb = np.asarray(img).copy()
        for i in range(1, int(mask.max()) + 1):
            colour = np.array(COLOURS[(i - 1) % len(COLOURS)])
            sel = mask == i
            rgb[sel] = (0.6 * rgb[sel] + 0.4 * colour).astype(np.uint8)
        img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for i, roi in enumerate(row["rois"][:6]):
        draw.rectangle([roi["bbox"][0], roi["bbox"][1], roi["bbox"][2] - 1, roi["bbox"][3] - 1],
                       outline=COLOURS[i % len(COLOURS)])
    img.thumbnail((size, size))
    canvas = Image.new("RGB", (size, size + 14))
    canvas.paste(img, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), f"{row['modality']} {row['source'][:18]} {row['slice_index']}", fill="white")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--config", default="all")
    parser.add_argument("--split", help="Default: the first split of the config.")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--out", default="preview.png")
    args = parser.parse_args()
    splits = load_dataset(args.folder, args.config)
    ds = splits[args.split or next(iter(splits))]
    rows = ds.select(np.linspace(0, len(ds) - 1, min(args.n, len(ds))).astype(int).tolist())
    cols = 4
    sheet = Image.new("RGB", (cols * args.size, -(-len(rows) // cols) * (args.size + 14)))
    for i, row in enumerate(rows):
        sheet.paste(tile(row, args.size), ((i % cols) * args.size, (i // cols) * (args.size + 14)))
    sheet.save(args.out)
    print(f"wrote {args.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
