"""``medtri-build export``: a built dataset in the layouts training code expects.

- ``llava``: LLaVA conversation records, one file per split (``llava_<split>.json``) pointing at
  ``images/<id>.png``: a human turn with ``<image>`` and an instruction, the
  multigranular description as the answer; ``--vqa`` adds one question per attribute.
- ``coco``: ``annotations/instances_<split>.json`` in COCO detection format, ROIs as boxes
  (``[x, y, width, height]``) and, for drawn masks, uncompressed RLE segmentations;
  images under ``images/``.
- ``folder``: the ``imagefolder`` layout, ``<split>/<id>.png`` with a typed
  ``metadata.parquet`` per split (one schema for all), which ``load_dataset("imagefolder", data_dir=...)`` reads.

File names are row ids (letters, digits, ``-`` and ``_``): nothing is written
outside the destination.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
from PIL import Image

from builder.dataset.shards import LayoutError, iter_rows, parquet_files
from builder.imaging import draw_boxes
from builder.llm import LLMConfig
from builder.options import NoOptions, option
from builder.registry import Registry

INSTRUCTION = "Describe this medical image: its modality, the organs shown, each region of interest, " \
              "its colour and texture, and how the regions relate to the rest of the image."
QUESTIONS = {
    "modality": "What imaging modality and view is this?",
    "organ_detection": "Which organs or tissues are shown?",
    "roi_analysis": "Where are the regions of interest and what do they look like?",
    "texture": "Describe the colour and texture of the regions of interest.",
    "region_relationship": "How do the regions of interest relate to the surrounding structures?",
}
_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


class ExportError(ValueError):
    """A folder that cannot be exported."""


def check(out: Path, config: str | None) -> None:
    """Refuse a folder without Parquet shards (for ``config``), or with names that are not plain."""
    try:
        if not parquet_files(out, config):
            raise ExportError(f"{out} holds no Parquet shards" + (f" for config {config!r}" if config else ""))
    except LayoutError as exc:
        raise ExportError(str(exc)) from None


def rows(out: Path, config: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(split, row) of every row of a built folder with its pixels, one modality if ``config`` names one (a row
    whose source withholds its pixels has no image to export; the exported folders hold the images trainers read)."""
    check(out, config)
    for split, row in iter_rows(out, config=config, batch_size=128):
        if not _SAFE.match(row["id"]):
            raise ExportError(f"{out}: id {row['id']!r} is not a safe file name")
        if row.get("image"):
            yield split, row


def _write_image(row: dict[str, Any], folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{row['id']}.png").write_bytes(row["image"]["bytes"])
    return f"{row['id']}.png"


def _record(record_id: str, image: str, meta: dict[str, Any], question: str, answer: str) -> dict[str, Any]:
    return {"id": record_id, "image": image, **meta, "conversations": [
        {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}


@dataclass(frozen=True)
class LlavaOptions:
    """``export llava``: the question-answer records, the images, the file."""

    vqa: Literal["fixed", "llm"] | None = option(
        None, cli={"is_flag": False, "flag_value": "fixed"},
        help="Question-answer records: fixed (one per attribute; --vqa alone) or llm (by a model).")
    vqa_pairs: int = option(3, help="--vqa llm: pairs per row.")
    llm: LLMConfig = field(default_factory=LLMConfig)  # --vqa llm: the model's server
    draw_rois: bool = option(False, help="Draw each ROI's box into the exported images.")
    jsonl: bool = option(False, help="Also write each split as JSON Lines (llava_<split>.jsonl: one record a line, "
                                     "for streaming readers; LLaVA's own loader reads the .json).")


def export_llava(out: Path, dest: Path, config: str | None = None, options: LlavaOptions = LlavaOptions()) -> int:
    """LLaVA records; ``vqa``: ``fixed`` (one question per attribute) or ``llm`` (pairs written by ``llm``);
    ``draw_rois``: the exported images have each ROI's box drawn in, as the release's images do."""
    mode, draw_rois, jsonl = options.vqa, options.draw_rois, options.jsonl
    llm = options.llm if options.llm.base_url and options.llm.model else None
    if mode == "llm" and llm is None:
        raise ExportError("--vqa llm needs --llm-base-url and --llm-model")
    records: list[dict[str, Any]] = []
    asked: list[tuple[str, str]] = []
    images: dict[str, tuple[str, dict[str, Any]]] = {}
    for split, row in rows(out, config):
        if draw_rois and row["rois"]:
            row = {**row, "image": {"bytes": draw_boxes(row["image"]["bytes"], [r["bbox"] for r in row["rois"]])}}
        image = "images/" + _write_image(row, dest / "images")
        meta = {"modality": row["modality"], "split": split}
        records.append(_record(row["id"], image, meta, INSTRUCTION, row["caption"]))
        for key, question in QUESTIONS.items() if mode == "fixed" else ():
            answer = (row["attributes"] or {}).get(key)
            if answer:
                records.append(_record(f"{row['id']}-{key}", image, meta, question, answer))
        if mode == "llm" and row["caption"]:
            asked.append((row["id"], row["caption"]))
            images[row["id"]] = (image, meta)
    if mode == "llm":
        records += _llm_pairs(llm, options.vqa_pairs, asked, images, dest)
    _write_llava(dest, records, jsonl)
    return len(records)


def _write_llava(dest: Path, records: list[dict[str, Any]], jsonl: bool) -> None:
    """One LLaVA file per split (``llava_<split>.json``: a JSON list, what LLaVA's loader reads), so training reads
    the train split alone; with ``jsonl`` each split also as JSON Lines."""
    by_split: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_split.setdefault(record["split"], []).append(record)
    for split, found in by_split.items():
        with open(dest / f"llava_{split}.json", "w", encoding="utf-8") as fh:
            json.dump(found, fh, ensure_ascii=False, indent=1)
        if jsonl:
            with open(dest / f"llava_{split}.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in found)


def _llm_pairs(llm: Any, pairs: int, asked: list[tuple[str, str]], images: dict[str, Any],
               dest: Path) -> list[dict[str, Any]]:
    from builder.dataset.vqa import VqaWriter

    answers = VqaWriter(llm, pairs).many(asked)
    records, rejected = [], []
    for row_id, _ in asked:
        answer = answers[row_id]
        if isinstance(answer, list):
            image, meta = images[row_id]
            records += [_record(f"{row_id}-qa{i}", image, meta, q, a) for i, (q, a) in enumerate(answer)]
        else:
            rejected.append({"id": row_id, "stage": answer.stage, "reason": answer.reason})
    with open(dest / "vqa_rejects.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in rejected)
    return records


def rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a boolean mask: column-major runs, starting with zeros."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def export_coco(out: Path, dest: Path, config: str | None = None, options: Any = None) -> int:
    """``annotations/instances_<split>.json`` (one COCO file per split, categories shared) and ``images/<split>/``.

    Every annotation has a ``segmentation`` (COCOeval's ``segm`` and torchvision's v2 wrapper need one): the
    ROI's mask as uncompressed RLE where the row has a mask, else its box as a polygon."""
    categories: dict[str, int] = {}
    splits: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for number, (split, row) in enumerate(rows(out, config), 1):
        images, annotations = splits.setdefault(split, ([], []))
        name = _write_image(row, dest / "images" / split)
        images.append({"id": number, "file_name": f"{split}/{name}", "width": row["width"], "height": row["height"],
                       "row_id": row["id"], "split": split, "modality": row["modality"]})
        labels = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"]))) if row["mask"] else None
        for index, roi in enumerate(row["rois"]):
            annotations.append(_annotation(roi, index, labels, number, len(annotations) + 1,
                                           categories.setdefault(roi["label"], len(categories) + 1)))
    (dest / "annotations").mkdir(parents=True, exist_ok=True)
    named = [{"id": i, "name": name, "supercategory": "roi"} for name, i in categories.items()]
    for split, (images, annotations) in splits.items():
        document = {"info": {"description": f"{out.name} ({split}) exported by medtri-build", "version": "1.0"},
                    "licenses": [], "images": images, "annotations": annotations, "categories": named}
        (dest / "annotations" / f"instances_{split}.json").write_text(json.dumps(document), encoding="utf-8")
    return sum(len(images) for images, _ in splits.values())


def _annotation(roi: dict[str, Any], index: int, labels: np.ndarray | None, image: int, number: int,
                category: int) -> dict[str, Any]:
    x0, y0, x1, y1 = roi["bbox"]
    annotation = {"id": number, "image_id": image, "category_id": category, "bbox": [x0, y0, x1 - x0, y1 - y0],
                  "area": (x1 - x0) * (y1 - y0), "iscrowd": 0, "origin": roi["origin"], "score": roi["score"],
                  "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}  # the box as a polygon, where no mask
    if labels is not None and roi["origin"] == "annotation" and (labels == index + 1).any():
        annotation["segmentation"] = rle(labels == index + 1)
        annotation["area"] = int((labels == index + 1).sum())
    return annotation


FOLDER_FIELDS = ("id", "modality", "organ", "disease", "coarse_caption", "caption", "source", "source_file",
                 "plane", "slice_index", "width", "height", "license")
FOLDER_INTS = ("slice_index", "width", "height")
BATCH = 1000  # metadata rows written at a time


def folder_schema() -> Any:
    """One schema for every split's ``metadata.parquet``: a column that is null in one split (no disease in the
    test split) has the same type as in the others, so ``imagefolder`` loads every build."""
    import pyarrow as pa

    fields = [("file_name", pa.string()), ("mask_file_name", pa.string())]
    fields += [(name, pa.int32() if name in FOLDER_INTS else pa.string()) for name in FOLDER_FIELDS]
    fields += [("rois", pa.string()), ("attributes", pa.string())]
    return pa.schema(fields)


@dataclass(frozen=True)
class FolderOptions:
    """``export folder``: the images' channels."""

    channels: Literal["keep", "1", "3"] = option(
        "keep", help="Image channels: keep each as stored, 1 (grey) or 3 (RGB): one mode for every image, so a "
                     "DataLoader can batch a config that mixes grey and colour images.")


def with_channels(data: bytes, channels: str) -> bytes:
    """PNG bytes of an image in ``channels`` (1: grey by luma, 3: RGB), or as they are (``keep``)."""
    if channels == "keep":
        return data
    image: Image.Image = Image.open(io.BytesIO(data))
    mode = "L" if channels == "1" else "RGB"
    if image.mode == mode:
        return data
    if image.mode.startswith("I") and mode == "RGB":  # 16-bit grey: its top 8 bits, then three channels
        image = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8))
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def export_folder(out: Path, dest: Path, config: str | None = None, options: Any = None) -> int:
    """``<split>/<id>.png``, ``<split>/masks/<id>.png`` (the label map, where the row has one) and
    ``<split>/metadata.parquet`` (typed, the same schema in every split; ``mask_file_name`` makes ``imagefolder``
    load the masks as a second image column)."""
    channels = options.channels if isinstance(options, FolderOptions) else "keep"
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = folder_schema()
    writers: dict[str, Any] = {}
    batches: dict[str, list[dict[str, Any]]] = {}

    def flush(split: str) -> None:
        if batches.get(split):
            writers[split].write_table(pa.Table.from_pylist(batches[split], schema=schema))
            batches[split] = []

    count = 0
    try:
        for split, row in rows(out, config):
            name = _write_image({**row, "image": {"bytes": with_channels(row["image"]["bytes"], channels)}},
                                dest / split)
            mask = _write_image({"id": row["id"], "image": row["mask"]}, dest / split / "masks") if row["mask"] \
                else None
            if split not in writers:
                writers[split] = pq.ParquetWriter(dest / split / "metadata.parquet", schema)
            batches.setdefault(split, []).append(
                {"file_name": name, "mask_file_name": f"masks/{mask}" if mask else None,
                 **{k: row[k] for k in FOLDER_FIELDS},
                 "rois": json.dumps(row["rois"]), "attributes": json.dumps(row["attributes"])})
            if len(batches[split]) >= BATCH:
                flush(split)
            count += 1
    finally:
        for split, writer in writers.items():
            flush(split)
            writer.close()
    return count


def export_medpix(out: Path, dest: Path, config: str | None = None, options: Any = None) -> int:
    """MedPix 2.0's own files (``Descriptions.json``, ``Case_topic.json``, ``images/``): see ``medpix_export``."""
    from builder.dataset.medpix_export import MedpixExportError
    from builder.dataset.medpix_export import export_medpix as export

    try:
        check(out, config)
        return export(out, dest, config)
    except MedpixExportError as exc:
        raise ExportError(str(exc)) from None


@dataclass(frozen=True)
class Exporter:
    """An entry of ``EXPORTERS``: ``run(dataset, dest, config, options) -> records written``, its options class, and
    what it counts."""

    run: Callable[..., int]
    options: type = NoOptions
    counts: str = "images"


EXPORTERS: Registry[Exporter] = Registry("exporters", {
    "llava": Exporter(export_llava, LlavaOptions, "records"),
    "coco": Exporter(export_coco),
    "folder": Exporter(export_folder, FolderOptions),
    "medpix": Exporter(export_medpix),
})
