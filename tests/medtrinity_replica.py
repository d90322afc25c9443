"""A small replica of the official MedTrinity-25M release, in both of its layouts, made from real MedPix images.

``25M_demo/``: Parquet with ``image`` (a ``datasets`` image struct of JPEG bytes), ``id``, ``caption``.
``25M_full/``: Parquet with ``file_name``, ``caption``, ``source`` (some rows with ``id``), and
``25M_accessible/dataset_shard_<n>.tar.zst``: nested folders, ``.png`` and ``.jpg`` members, rows whose image
is in no shard, members with no row, and a shard cut short. Each image has its ROIs drawn in as green outlines,
JPEG-compressed afterwards. :class:`Replica` says what a faithful reader must find.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from PIL import Image, ImageDraw

__all__ = ["CAPTIONS", "Replica", "draw_boxes", "make_demo", "make_full"]

#: (source, caption, the modality a reader must decide). The first sentence names the modality, as in the release.
CAPTIONS = [
    ("deeplesion", "The image is a non-contrasted computed tomography (CT) scan of the abdomen, showing the liver. "
                   "A hypodense region of interest lies in the right lobe.", "ct"),
    ("brats24", "The image is a magnetic resonance imaging (MRI) scan of the brain, axial view. The region of "
                "interest is a hyperintense lesion in the left hemisphere.", "mri"),
    ("nih_chest", "This chest X-Ray image, taken from the PA position, shows clear lung fields. No effusion.", "xray"),
    ("pmc_oa", "The image is a magnetic resonance imaging (MRI) scan of the knee, sagittal plane. A tear is "
               "marked.", "mri"),
    ("MAMA-MIA", "The image is a magnetic resonance imaging (MRI) scan of the brain, ...", "mri"),  # wrong organ
    ("deeplesion", "The image is an MRI of the pelvis. Table and caption disagree.", "ct"),  # the table decides
    # (the demo has no source column: there the caption decides, "mri")
    ("llava_med_data", "A histopathology image stained with hematoxylin and eosin shows glands.", "pathology"),
]
UNDECIDED = ("pmc_vqa", "A figure from a paper, showing several panels with arrows.")


@dataclass
class Replica:
    root: Path
    rows: dict[str, dict] = field(default_factory=dict)  # row id -> bytes, caption, modality, boxes, file_name
    # (and for the demo layout, gray: the pixels before the boxes were drawn)
    undecided: list[str] = field(default_factory=list)  # ids whose modality cannot be decided
    missing: list[str] = field(default_factory=list)  # file_names in no shard
    orphans: list[str] = field(default_factory=list)  # shard members with no row
    truncated: dict[str, int] = field(default_factory=dict)  # shard -> members that precede its end


def draw_boxes(gray: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """The image in RGB with 1-2 green outlines drawn in; each box's outer edge, pixel-edge coordinates."""
    image = Image.fromarray(gray).convert("RGB")
    draw = ImageDraw.Draw(image)
    height, width = gray.shape
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, 3))):
        w, h = (int(v) for v in rng.integers(16, min(width, height) // 2, 2))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box = (x0, y0, x0 + w, y0 + h)
        if any(not (box[2] + 4 < b[0] or b[2] + 4 < box[0] or box[3] + 4 < b[1] or b[3] + 4 < box[1]) for b in boxes):
            continue
        draw.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), outline=(0, 255, 0), width=int(rng.integers(1, 4)))
        boxes.append(box)
    return image, boxes


def _encode(image: Image.Image, kind: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85) if kind == "jpg" else image.save(buf, format="PNG")
    return buf.getvalue()


def _grays(images: list[Path], size: int = 160) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("L").resize((size, size))) for p in images]


def make_demo(root: Path, images: list[Path], seed: int = 0) -> Replica:
    rng = np.random.default_rng(seed)
    replica = Replica(root)
    rows = []
    for i, gray in enumerate(_grays(images)):
        _, caption, modality = CAPTIONS[i % len(CAPTIONS)]
        modality = "mri" if caption.startswith("The image is an MRI") else modality  # no source column here
        if i == len(images) - 1:
            caption, modality = UNDECIDED[1], None
        image, boxes = draw_boxes(gray, rng)
        data = _encode(image, "jpg")
        row_id = str(uuid.UUID(int=int(rng.integers(0, 2**62))))
        rows.append({"image": {"bytes": data, "path": None}, "id": row_id, "caption": caption})
        if modality is None:
            replica.undecided.append(row_id)
        else:
            replica.rows[row_id] = {"bytes": data, "caption": caption, "modality": modality, "boxes": boxes,
                                    "gray": gray}  # the pixels before the boxes were drawn in
    folder = root / "25M_demo"
    folder.mkdir(parents=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.Table.from_pylist(rows, schema=pa.schema([("image", image_type), ("id", pa.string()),
                                                         ("caption", pa.string())]))
    pq.write_table(table, folder / "train-00000-of-00001.parquet", row_group_size=4)
    (root / "README.md").write_text("---\nlicense: cc-by-nc-sa-4.0\nextra_gated_prompt: You agree to use the data "
                                    "for research only.\n---\n# MedTrinity-25M (replica)\n")
    return replica


def _shard(path: Path, members: list[tuple[str, bytes]], cut: bool) -> int:
    """Write a tar.zst shard; with ``cut``, keep only its first 60% and return how many members survive whole."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    # one zstd frame per 16 KiB, as multi-threaded zstd writes them: a cut keeps every frame before it
    tar, step = buf.getvalue(), 1 << 14
    frames = [zstandard.ZstdCompressor(level=3).compress(tar[i:i + step]) for i in range(0, len(tar), step)]
    raw = b"".join(frames)
    keep = int(len(raw) * 0.6)
    path.write_bytes(raw[:keep] if cut else raw)
    if not cut:
        return len(members)
    ends = [sum(len(f) for f in frames[:n + 1]) for n in range(len(frames))]
    plain = tar[: step * sum(end <= keep for end in ends)]
    offset, whole = 0, 0
    for _, data in members:  # a member is whole when its header and all its data were decoded
        if offset + 512 + len(data) > len(plain):
            break
        offset += 512 + -(-len(data) // 512) * 512
        whole += 1
    return whole


def make_full(root: Path, images: list[Path], seed: int = 1, count: int = 3) -> Replica:
    """``count`` shards (the last one cut short) for the ``25M_full`` captions."""
    rng = np.random.default_rng(seed)
    replica = Replica(root)
    rows: list[dict] = []
    shards: dict[int, list[tuple[str, bytes]]] = {n: [] for n in range(1, count + 1)}
    grays = _grays(images)
    for i, gray in enumerate(grays):
        source, caption, modality = CAPTIONS[i % len(CAPTIONS)]
        kind = "png" if i % 3 == 0 else "jpg"
        name = f"{source}_{i:05d}.{kind}"
        image, boxes = draw_boxes(gray, rng)
        data = _encode(image, kind)
        row = {"file_name": name, "caption": caption, "source": source,
               "id": f"mt-{i:05d}" if i % 2 else None}
        shard = 1 + i % count
        if i % 8 == 6:
            replica.missing.append(name)  # a row whose image no shard holds
        else:
            shards[shard].append((f"data/{source}/part{i % 2}/images/x/y/{name}", data))
            replica.rows[name] = {"bytes": data, "caption": caption, "modality": modality, "boxes": boxes,
                                  "shard": shard, "id": row["id"]}
        rows.append(row)
    for j in range(2):  # members with no caption row
        orphan = f"orphan_{j}.png"
        shards[1 + j].append((f"data/extra/a/b/c/d/{orphan}", _encode(Image.fromarray(grays[j]), "png")))
        replica.orphans.append(orphan)
    shards[1].append(("data/extra/checksums.txt", b"not an image\n"))  # a file that is no image: a reject line too
    replica.orphans.append("checksums.txt")
    full, accessible = root / "25M_full", root / "25M_accessible"
    full.mkdir(parents=True)
    accessible.mkdir()
    schema = pa.schema([("file_name", pa.string()), ("caption", pa.string()), ("source", pa.string()),
                        ("id", pa.string())])
    half = len(rows) // 2
    for part, chunk in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), full / f"train-{part:05d}-of-00002.parquet")
    for number, members in shards.items():
        cut = number == count
        whole = _shard(accessible / f"dataset_shard_{number}.tar.zst", members, cut)
        if cut:
            replica.truncated[f"25M_accessible/dataset_shard_{number}.tar.zst"] = whole
            for name, _ in members[whole:]:
                base = name.rsplit("/", 1)[1]
                replica.rows.pop(base, None)
                replica.missing.append(base)  # never read: its row is reported as missing too
    return replica
