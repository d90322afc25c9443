"""The card's charts: PNG files beside README.md that the Hub renders in the card.

- ``card/rows.png``: rows per modality, and per organ or region (the 15 most common);
- ``card/rois.png``: ROIs per row, and ROI area as a share of the image (by decade);
- ``card/examples.png``: a contact sheet of example rows, one per modality first, each ROI's box drawn in green
  (as the MedTrinity-25M release draws them), its modality and first ROI label under it. Rows whose pixels are
  withheld are never shown.

Counts come from the build's ledger; the examples are read back from the Parquet shards. matplotlib draws the
bar charts (headless, Agg); Pillow the contact sheet.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from builder.imaging import BOX_COLOUR
from builder.pipeline.accounting import MANY_ROIS, Ledger

__all__ = ["CHARTS", "EXAMPLES", "write_charts"]

CHARTS = ("card/rows.png", "card/rois.png", "card/examples.png")
EXAMPLES = 12  # rows on the contact sheet
TILE = 192  # pixels a side of each example


def _bars(axis: Any, counts: Iterable[tuple[str, int]], title: str) -> None:
    labels, values = zip(*counts) if counts else ((), ())
    axis.barh(range(len(values)), values, color="#3b7dd8")
    axis.set_yticks(range(len(values)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_title(title, fontsize=10)
    axis.tick_params(axis="x", labelsize=8)


def _figure(path: Path, panels: list[tuple[list[tuple[str, int]], str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), dpi=100)
    for axis, (counts, title) in zip(axes, panels):
        _bars(axis, counts, title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)


def _order_rois(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: int(kv[0].rstrip("+")) if kv[0] != f"{MANY_ROIS}+" else MANY_ROIS)


def _order_areas(counts: dict[str, int]) -> list[tuple[str, int]]:
    names = {"1e0": ">= 100%", "1e-1": "10-100%", "1e-2": "1-10%", "1e-3": "0.1-1%", "1e-4": "0.01-0.1%",
             "1e-5": "< 0.01%"}
    return [(names[key], counts[key]) for key in names if key in counts]


def _examples(out: Path, shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to :data:`EXAMPLES` rows with pixels and ROIs: one per modality first, then more of each."""
    first: dict[str, dict[str, Any]] = {}
    more: list[dict[str, Any]] = []
    for shard in sorted((s for s in shards if s["format"] == "parquet"), key=lambda s: s["path"]):
        if shard["modality"] in first and len(more) >= EXAMPLES:
            continue  # a shard's first rows only, and only while they may still be shown
        batches = pq.ParquetFile(out / shard["path"]).iter_batches(batch_size=64, columns=["image", "rois",
                                                                                           "modality"])
        for row in next(batches).to_pylist():
            if not row["image"] or not row["rois"]:
                continue
            if row["modality"] not in first:
                first[row["modality"]] = row
            elif len(more) < EXAMPLES:
                more.append(row)
    return ([*first.values(), *more])[:EXAMPLES]


def _tile(row: dict[str, Any]) -> Image.Image:
    opened = Image.open(io.BytesIO(row["image"]["bytes"]))
    image = opened.convert("RGB") if opened.mode != "I;16" else opened.point(lambda v: v / 256).convert("RGB")
    draw = ImageDraw.Draw(image)
    for roi in row["rois"]:
        x0, y0, x1, y1 = roi["bbox"]
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=BOX_COLOUR, width=max(1, image.width // 128))
    image.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE + 16), "white")
    tile.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
    label = f"{row['modality']}: {row['rois'][0]['label']}"[:34]
    ImageDraw.Draw(tile).text((4, TILE + 2), label, fill="black")
    return tile


def _contact_sheet(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = min(4, len(rows))
    lines = -(-len(rows) // columns)
    sheet = Image.new("RGB", (columns * TILE, lines * (TILE + 16)), "white")
    for index, row in enumerate(rows):
        sheet.paste(_tile(row), ((index % columns) * TILE, (index // columns) * (TILE + 16)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")


def write_charts(out: Path, ledger: Ledger, shards: list[dict[str, Any]]) -> list[str]:
    """The charts this build can draw (paths relative to ``out``): none without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    written = []
    _figure(out / CHARTS[0], [(sorted(ledger.by_modality.items(), key=lambda kv: -kv[1]), "rows per modality"),
                              (ledger.by_organ.most_common(15), "rows per organ or region (15 most)")])
    written.append(CHARTS[0])
    if ledger.rois_per_row:
        _figure(out / CHARTS[1], [(_order_rois(dict(ledger.rois_per_row)), "ROIs per row"),
                                  (_order_areas(dict(ledger.roi_area)), "ROI area, share of the image")])
        written.append(CHARTS[1])
    examples = _examples(out, shards)
    if examples:
        _contact_sheet(out / CHARTS[2], examples)
        written.append(CHARTS[2])
    return written
