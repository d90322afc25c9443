"""Consumers: exports for training, streaming into torch DataLoaders, resuming mid-epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build, run_cli, shard_rows, write_manifest
from datasets import load_dataset
from datasets.distributed import split_dataset_by_node
from PIL import Image

N = 64


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 images with masks in 8 shards: enough shards for 2 workers x 2 ranks."""
    root = tmp_path_factory.mktemp("sharded")
    (root / "img").mkdir()
    for i in range(N):
        image = np.full((24, 32), 40 + i, np.uint8)
        mask = np.zeros((24, 32), np.uint8)
        mask[4:10, 3:3 + i % 20 + 2] = 1
        Image.fromarray(image).save(root / "img" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "img" / f"{i:03d}_mask.png")
    out = root / "out"
    build(write_manifest(root, {"name": "s", "format": "image", "images": "img/???.png", "masks": "img/*_mask.png",
                                "labels": {1: "lesion"}, "modality": "xray"}), out, "--shard-rows", "8")
    return out


def _streamed(out: Path):
    return load_dataset(str(out), "xray", split="train", streaming=True)


def test_a_two_worker_dataloader_yields_every_row_once(sharded: Path) -> None:
    torch = pytest.importorskip("torch", reason="needs the torch extra")
    from medtrinity_25m import roi_collate

    ds = _streamed(sharded)
    assert ds.num_shards == 8
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, collate_fn=roi_collate)
    ids = []
    for batch in loader:
        ids += batch["id"]
        assert all(b.shape[1] == 4 and b.dtype == torch.float32 for b in batch["boxes"])
        assert all(img.dtype == torch.uint8 and img.shape[0] == 1 for img in batch["image"])
        assert all(m.shape == img.shape[1:] for m, img in zip(batch["mask"], batch["image"]))
        assert all(labels == ["lesion"] for labels in batch["labels"])
    assert len(ids) == len(set(ids)) == N


def test_stream_helper_decodes_to_numpy_in_the_workers(sharded: Path) -> None:
    torch = pytest.importorskip("torch", reason="needs the torch extra")
    from medtrinity_25m import roi_collate, stream

    ds = stream(str(sharded), "xray")
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, collate_fn=roi_collate)
    batches = list(loader)
    assert sum(len(b["id"]) for b in batches) == N
    first = next(iter(stream(str(sharded), "xray")))
    assert isinstance(first["image"], np.ndarray) and first["image"].shape == (24, 32)
    assert first["mask"].max() == 1 and first["rois"][0]["label"] == "lesion"


def test_split_by_node_gives_disjoint_complete_ranks(sharded: Path) -> None:
    ranks = [{row["id"] for row in split_dataset_by_node(_streamed(sharded), rank=r, world_size=2)} for r in (0, 1)]
    assert not ranks[0] & ranks[1]
    assert len(ranks[0] | ranks[1]) == N and len(ranks[0]) == len(ranks[1]) == N // 2


def test_shuffle_buffer_visits_every_row(sharded: Path) -> None:
    ids = [row["id"] for row in _streamed(sharded).shuffle(seed=1, buffer_size=16)]
    assert sorted(ids) == sorted(row["id"] for row in _streamed(sharded)) and len(set(ids)) == N


def _resume(out: Path, workers: int, shuffle: bool) -> list[str]:
    from torchdata.stateful_dataloader import StatefulDataLoader

    def dataset():
        ds = _streamed(out).select_columns(["id"])
        return ds.shuffle(seed=0, buffer_size=16) if shuffle else ds

    first = StatefulDataLoader(dataset(), batch_size=4, num_workers=workers, collate_fn=lambda b: b)
    it = iter(first)
    seen = [row["id"] for _ in range(5) for row in next(it)]
    state = first.state_dict()
    second = StatefulDataLoader(dataset(), batch_size=4, num_workers=workers, collate_fn=lambda b: b)
    second.load_state_dict(state)
    return seen + [row["id"] for batch in second for row in batch]


@pytest.mark.parametrize("workers", [0, 2])
def test_resuming_mid_epoch_without_a_shuffle_buffer_is_exact(sharded: Path, workers: int) -> None:
    pytest.importorskip("torchdata", reason="resuming needs torchdata's StatefulDataLoader")
    ids = _resume(sharded, workers, shuffle=False)
    assert len(ids) == len(set(ids)) == N


@pytest.mark.parametrize("workers", [0, 2])
def test_resuming_with_a_shuffle_buffer_is_not_exact(sharded: Path, workers: int) -> None:
    """What the README documents: the buffer's rows are lost (0 workers); load fails (2 workers)."""
    pytest.importorskip("torchdata", reason="resuming needs torchdata's StatefulDataLoader")
    try:
        ids = _resume(sharded, workers, shuffle=True)
    except Exception as exc:  # datasets raised IndexError here with several workers
        assert workers > 1, exc
        return
    assert len(set(ids)) < N


def test_export_llava_points_at_images_and_carries_descriptions(sharded: Path, tmp_path: Path) -> None:
    dest = tmp_path / "llava"
    run_cli("export", "llava", sharded, "--out", dest, "--vqa")
    records = json.loads((dest / "llava_train.json").read_text())
    assert sorted(p.name for p in dest.glob("llava_*")) == ["llava_train.json"]  # one file per split
    captions = {row["id"]: row["caption"] for row in load_dataset(str(sharded), "xray", split="train")}
    main = [r for r in records if r["id"] in captions]
    assert len(main) == N and len(records) == N * 6
    for record in records:
        assert (dest / record["image"]).is_file()
        human, answer = record["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert answer["from"] == "gpt" and answer["value"]
    assert all(r["conversations"][1]["value"] == captions[r["id"]] for r in main)


def test_export_coco_has_the_required_keys_and_rle_masks(sharded: Path, tmp_path: Path) -> None:
    dest = tmp_path / "coco"
    run_cli("export", "coco", sharded, "--out", dest)
    coco = json.loads((dest / "annotations" / "instances_train.json").read_text())
    assert {"images", "annotations", "categories"} <= set(coco)
    ids = {image["id"] for image in coco["images"]}
    categories = {c["id"] for c in coco["categories"]}
    for image in coco["images"]:
        assert {"id", "file_name", "width", "height"} <= set(image)
        assert (dest / "images" / image["file_name"]).is_file()
    for ann in coco["annotations"]:
        assert {"id", "image_id", "category_id", "bbox", "area", "iscrowd"} <= set(ann)
        assert ann["image_id"] in ids and ann["category_id"] in categories and len(ann["bbox"]) == 4
        rle = ann["segmentation"]
        assert sum(rle["counts"]) == rle["size"][0] * rle["size"][1]
        assert sum(rle["counts"][1::2]) == ann["area"]
    assert len(coco["annotations"]) == N
    # the real client: pycocotools evaluates the file against itself, boxes and masks, at AP 1.0
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = COCO(str(dest / "annotations" / "instances_train.json"))
    found = truth.loadRes([{**ann, "score": 1.0} for ann in coco["annotations"]])
    for kind in ("bbox", "segm"):
        evaluation = COCOeval(truth, found, iouType=kind)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0)


def test_export_folder_loads_back_with_imagefolder(sharded: Path, tmp_path: Path) -> None:
    dest = tmp_path / "folder"
    run_cli("export", "folder", sharded, "--out", dest)
    ds = load_dataset("imagefolder", data_dir=str(dest), split="train")
    assert len(ds) == N
    row = ds[0]
    assert row["image"].size == (row["width"], row["height"]) and row["caption"]
    assert json.loads(row["rois"])[0]["label"] == "lesion"


def test_every_coco_annotation_has_a_segmentation_and_the_export_reads_back(demo_out: Path, tmp_path: Path) -> None:
    """Box-only ROIs (the demo's fundus boxes) get their box as a polygon: COCOeval's segm and torchvision's v2
    wrapper need the key. Each split has its file, and format coco reads the export as the same boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dest = tmp_path / "coco"
    run_cli("export", "coco", demo_out, "--out", dest)
    files = sorted((dest / "annotations").glob("instances_*.json"))
    assert files and all(f.stem.removeprefix("instances_") for f in files)
    for path in files:
        doc = json.loads(path.read_text())
        assert all("segmentation" in ann for ann in doc["annotations"])
        truth = COCO(str(path))
        if doc["annotations"]:
            evaluation = COCOeval(truth, truth.loadRes([{**a, "score": 1.0} for a in doc["annotations"]]), "segm")
            evaluation.evaluate()
            evaluation.accumulate()
    (back,) = [f for f in files if f.stem == "instances_train"]
    manifest = tmp_path / "back.yaml"
    manifest.write_text(json.dumps({"sources": [{"name": "back", "format": "coco", "modality": "fundus",
                                                 "annotations": str(back), "images": str(dest / "images")}]}))
    result = run_cli("build", manifest, "--out", tmp_path / "out", "--workers", "1", "--quiet", ok=False)
    assert result.exit_code == 0, result.output


def test_webdataset_shards_load_in_datasets_builder_and_a_two_worker_loader(demo_out: Path) -> None:
    """Real clients on the demo's WebDataset folders: datasets' webdataset builder without features given (every
    sample has the same members), webdataset's own pipeline in a DataLoader with two workers (enough shards), and
    the sizes.json open_clip reads."""
    import torch
    import webdataset as wds

    parquet_ids = {config: {r["id"] for r in shard_rows(demo_out, config)} for config in
                   [p.name for p in (demo_out / "webdataset").iterdir() if p.is_dir()]}
    for config, ids in parquet_ids.items():
        tars = sorted(str(p) for p in (demo_out / "webdataset" / config).glob("train-*.tar"))
        ds = load_dataset("webdataset", data_files={"train": tars}, split="train")
        assert {"png", "mask.png", "txt", "json"} <= set(ds.column_names) and len(ds) == len(ids)
        sizes = json.loads((demo_out / "webdataset" / config / "sizes.json").read_text())
        assert sum(sizes.values()) == len(ids) and set(sizes) == {Path(t).name for t in tars}
    tars = sorted(str(p) for p in (demo_out / "webdataset" / "ct").glob("train-*.tar"))
    assert len(tars) >= 2
    pipeline = wds.WebDataset(tars, shardshuffle=False, nodesplitter=None).decode("pil").to_tuple("__key__", "txt")
    seen = [key for keys, _ in torch.utils.data.DataLoader(pipeline, num_workers=2, batch_size=None)
            for key in ([keys] if isinstance(keys, str) else keys)]
    assert sorted(seen) == sorted(parquet_ids["ct"])


def test_a_tar_shard_holds_the_bytes_webdataset_writes_and_no_build_process_imports_torch(demo_out: Path,
                                                                                         tmp_path: Path) -> None:
    """The shards are written with tarfile, not webdataset (whose import brings torch into the process that writes
    every shard): each tar is byte for byte what webdataset's TarWriter writes of the same samples."""
    import io
    import subprocess
    import sys
    import tarfile

    import webdataset as wds

    for shard in sorted((demo_out / "webdataset").rglob("*.tar"))[:4]:
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, field = member.name.partition(".")
                handle = tar.extractfile(member)
                samples.setdefault(key, {"__key__": key})[field] = handle.read() if handle else b""
        buffer = io.BytesIO()
        writer = wds.TarWriter(buffer, mtime=0, encoder=False)
        for sample in samples.values():
            writer.write(sample)
        writer.close()
        assert buffer.getvalue() == shard.read_bytes(), shard.name
    (tmp_path / "img").mkdir()
    for i in range(6):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    manifest = write_manifest(tmp_path, {"name": "few", "format": "image", "images": "img/*.png", "modality": "xray"})
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "builder", "build", str(manifest), "--out",
                           str(tmp_path / "out"), "--format", "both", "--workers", "1", "--quiet"],
                          capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "webdataset" not in imported and "torch" not in imported
    assert len(list((tmp_path / "out" / "webdataset").rglob("*.tar"))) >= 1


def test_a_16_bit_source_is_stored_as_an_8_bit_display_image_unless_asked(tmp_path: Path) -> None:
    """A 16-bit raster (values up to 4000) as trainers read it: PIL's convert("RGB") and CLIP's processor keep its
    contrast; bit_depth: stored keeps the 16 bits."""
    import io

    import numpy as np
    from PIL import Image

    (tmp_path / "img").mkdir()
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 4000 // (64 * 48)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "img" / "a.png")
    source = {"name": "s", "format": "image", "modality": "xray", "images": "img/*.png"}
    build(write_manifest(tmp_path / "d", {**source, "images": str(tmp_path / "img" / "*.png")}), tmp_path / "display")
    build(write_manifest(tmp_path / "s", {**source, "images": str(tmp_path / "img" / "*.png"),
                                          "bit_depth": "stored"}), tmp_path / "stored")
    (shown,) = shard_rows(tmp_path / "display")
    (kept,) = shard_rows(tmp_path / "stored")
    display = Image.open(io.BytesIO(shown["image"]["bytes"]))
    assert display.mode == "L" and np.corrcoef(np.asarray(display).ravel(), ramp.ravel())[0, 1] > 0.99
    rgb = np.asarray(display.convert("RGB"))
    assert (rgb == 255).mean() < 0.05  # a 16-bit PNG through convert("RGB") is about all white
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(kept["image"]["bytes"]))), ramp)
    assert (np.asarray(Image.open(io.BytesIO(kept["image"]["bytes"])).convert("RGB")) == 255).mean() > 0.5
    transformers = pytest.importorskip("transformers")
    pixels = transformers.CLIPImageProcessor()(display.convert("RGB"), return_tensors="np")["pixel_values"]
    assert pixels.std() > 0.1  # the processor sees the ramp, not a flat white image


def test_folder_export_writes_masks_beside_images_and_one_channel_mode(demo_out: Path, tmp_path: Path) -> None:
    """imagefolder loads the masks as a second image column (mask_file_name); --channels 3 gives every image of a
    config that mixes grey and colour one mode, so torch's collate (as MONAI's DataLoader) batches them."""
    import numpy as np
    import torch

    dest = tmp_path / "folder"
    run_cli("export", "folder", demo_out, "--out", dest, "--config", "ct", "--channels", "3")
    ds = load_dataset("imagefolder", data_dir=str(dest), split="train")
    parquet = {r["id"]: r for r in shard_rows(demo_out, "ct")}
    assert len(ds) == len(parquet) and {"image", "mask"} <= set(ds.features)
    for row in ds:
        assert row["image"].mode == "RGB" and (row["mask"] is None) == (parquet[row["id"]]["mask"] is None)
        if row["mask"] is not None:
            assert row["mask"].size == row["image"].size
    same = [torch.from_numpy(np.asarray(r["image"].resize((32, 32)))) for r in ds]
    assert torch.utils.data.default_collate(same).shape == (len(same), 32, 32, 3)
    from medtrinity_25m import stream

    shapes = {row["image"].ndim for row in stream(str(demo_out), "all", channels=3)}
    assert shapes == {3}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build that mixes sources, splits and bit depths: 16-bit radiographs with box tables in train and test,
    8-bit colour dermoscopy with masks in train, both formats."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("mixed")
    (folder / "xr").mkdir()
    (folder / "derm").mkdir()
    rows = []
    for i in range(12):
        ramp = (np.arange(40 * 56, dtype=np.uint32).reshape(40, 56) * (1000 + 300 * i) // (40 * 56))
        Image.fromarray(ramp.astype(np.uint16)).save(folder / "xr" / f"x{i:02d}.png")
        rows.append(f"x{i:02d}.png,{4 + i},{5},{30 + i},{25},nodule")
        rgb = np.zeros((32, 48, 3), np.uint8)
        rgb[..., 0] = 120 + i
        Image.fromarray(rgb).save(folder / "derm" / f"d{i:02d}.png")
        mask = np.zeros((32, 48), np.uint8)
        mask[8:20, 10:30] = 1
        Image.fromarray(mask).save(folder / "derm" / f"d{i:02d}_mask.png")
    (folder / "boxes.csv").write_text("image,x_min,y_min,x_max,y_max,label\n" + "\n".join(rows) + "\n")
    manifest = write_manifest(folder, {
        "name": "xr", "format": "image", "modality": "xray", "images": "xr/*.png", "boxes": "boxes.csv",
        "split": {"by": "{stem}", "ratios": {"train": 0.6, "test": 0.4}}}, {
        "name": "derm", "format": "image", "modality": "dermoscopy", "images": "derm/d??.png",
        "masks": "derm/*_mask.png", "labels": {1: "lesion"}})
    out = folder / "out"
    build(manifest, out, "--format", "both")
    return out


def test_the_clients_read_a_build_mixing_sources_splits_and_bit_depths(mixed: Path, tmp_path: Path) -> None:
    import numpy as np
    import torch
    import webdataset as wds
    from PIL import Image
    from pycocotools.coco import COCO

    summary = json.loads((mixed / "build.json").read_text())
    assert set(summary["rows"]["by_split"]) == {"train", "test"}
    for config in ("xray", "dermoscopy"):  # datasets' webdataset builder, every split, no features given
        for split in summary["rows"]["by_split"]:
            tars = sorted(str(p) for p in (mixed / "webdataset" / config).glob(f"{split}-*.tar"))
            if tars:
                assert len(load_dataset("webdataset", data_files={split: tars}, split=split)) > 0
        tars = sorted(str(p) for p in (mixed / "webdataset" / config).glob("*.tar"))
        loader = torch.utils.data.DataLoader(wds.WebDataset(tars, shardshuffle=False, nodesplitter=None)
                                             .decode("pil").to_tuple("png", "txt"), num_workers=2, batch_size=None)
        images = [image for image, _ in loader]
        assert images and all(image.mode in ("L", "RGB") for image in images)
        assert all((np.asarray(image.convert("RGB")) == 255).mean() < 0.5 for image in images)  # not clipped white
    run_cli("export", "llava", mixed, "--out", tmp_path / "llava")
    assert sorted(p.name for p in (tmp_path / "llava").glob("llava_*.json")) == ["llava_test.json",
                                                                                  "llava_train.json"]
    run_cli("export", "coco", mixed, "--out", tmp_path / "coco")
    for split in ("train", "test"):
        api = COCO(str(tmp_path / "coco" / "annotations" / f"instances_{split}.json"))
        assert all("segmentation" in ann for ann in api.dataset["annotations"])
        for ann in api.dataset["annotations"]:
            assert api.annToMask(ann).sum() > 0
    run_cli("export", "folder", mixed, "--out", tmp_path / "folder", "--channels", "3")
    ds = load_dataset("imagefolder", data_dir=str(tmp_path / "folder"), split="train")
    assert {row["image"].mode for row in ds} == {"RGB"}
    assert any(row["mask"] is not None for row in ds)
    assert Image.open(io_bytes(shard_rows(mixed, "xray")[0]["image"]["bytes"])).mode == "L"


def io_bytes(data: bytes) -> object:
    import io

    return io.BytesIO(data)
