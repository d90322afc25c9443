"""A built folder opens with `datasets` as a user would: configs, memory, streaming, tars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from datasets import Image, get_dataset_config_names, load_dataset

from medtrinity_25m import ATTRIBUTE_KEYS, FEATURES, MODALITIES, WEBDATASET_FEATURES, MedTrinity25M


def test_config_names_list_the_modalities_present_and_all(demo_out: Path) -> None:
    summary = json.loads((demo_out / "build.json").read_text())
    present = set(summary["rows"]["by_modality"])
    assert {"ct", "dermoscopy", "fundus"} <= present
    names = get_dataset_config_names(str(demo_out))
    assert names[0] == "all" and set(names[1:]) == present
    with pytest.raises(ValueError, match="pet"):
        load_dataset(str(demo_out), "pet")


@pytest.mark.parametrize("streaming", [False, True])
def test_every_row_loads_with_decoded_images_and_the_full_schema(demo_out: Path, streaming: bool) -> None:
    summary = json.loads((demo_out / "build.json").read_text())
    for config, count in summary["rows"]["by_modality"].items():
        ds = load_dataset(str(demo_out), config, split="train", streaming=streaming)
        rows = list(ds)
        assert len(rows) == count
        for row in rows:
            assert set(row) == set(FEATURES)
            assert row["modality"] == config and row["modality"] in MODALITIES
            assert row["image"].size == (row["width"], row["height"])
            assert set(row["attributes"]) == set(ATTRIBUTE_KEYS) and row["attributes"]["modality"]
            stated = [v for v in row["attributes"].values() if v]  # an attribute with nothing to state is null
            assert row["caption"] == " ".join(stated)
            assert row["caption"] and row["coarse_caption"]
            if row["mask"] is not None:
                assert row["mask"].size == row["image"].size
                assert int(np.asarray(row["mask"]).max()) == len(row["rois"])
    every = load_dataset(str(demo_out), "all", split="train", streaming=streaming)
    assert sum(1 for _ in every) == summary["rows"]["total"]


def test_ids_are_unique_and_stable_across_rebuilds(demo_out: Path, tmp_path: Path) -> None:
    from conftest import run_cli

    again = tmp_path / "again"
    run_cli("demo", "--out", again, "--workers", "1", "--quiet")
    first = load_dataset(str(demo_out), "all", split="train")
    second = load_dataset(str(again), "all", split="train")
    assert len(set(first["id"])) == len(first)
    assert first["id"] == second["id"]
    assert first["caption"] == second["caption"]


def test_tars_read_back_with_webdataset_and_datasets(demo_out: Path) -> None:
    summary = json.loads((demo_out / "build.json").read_text())
    tars = sorted(str(p) for p in (demo_out / "webdataset").rglob("*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False).decode("pil"))
    assert len(samples) == summary["rows"]["total"]
    for sample in samples:
        meta = sample["json"]
        assert meta["id"] == sample["__key__"]
        assert sample["png"].size == (meta["width"], meta["height"])
        assert "mask.png" in sample and sample["txt"] == (meta["caption"] or "")  # every sample: the same members
        has_mask = meta["source"] in ("synthetic-ct-phantom", "synthetic-dermoscopy")
        assert (np.asarray(sample["mask.png"]).max() > 0) == (has_mask and bool(meta["rois"]))
    ct = sorted(str(p) for p in (demo_out / "webdataset" / "ct").glob("*.tar"))
    ds = load_dataset("webdataset", data_files={"train": ct}, split="train", features=WEBDATASET_FEATURES)
    assert len(ds) == summary["rows"]["by_modality"]["ct"]
    assert isinstance(ds.features["png"], Image)
    assert {row["json"]["modality"] for row in ds} == {"ct"}
    assert sum(np.asarray(row["mask.png"]).max() > 0 for row in ds) == sum(
        r["mask"] is not None for r in load_dataset(str(demo_out), "ct", split="train"))


def test_a_webdataset_only_build_loads_through_its_card(tmp_path: Path) -> None:
    from conftest import run_cli

    out = tmp_path / "wds-only"
    run_cli("demo", "--out", out, "--workers", "1", "--quiet", "--format", "webdataset")
    assert not (out / "data").exists()
    for streaming in (False, True):
        rows = list(load_dataset(str(out), "dermoscopy", split="train", streaming=streaming))
        assert len(rows) == 6
        assert all(r["png"].size == (r["json"]["width"], r["json"]["height"]) for r in rows)


def test_folder_holds_no_loading_script_and_hidden_temp_files(demo_out: Path) -> None:
    assert not list(demo_out.rglob("*.py"))
    assert not list(demo_out.rglob(".*.tmp"))


def test_builder_class_reads_the_same_rows(demo_out: Path, tmp_path: Path) -> None:
    builder = MedTrinity25M(config_name="ct", data_dir=str(demo_out), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    direct = load_dataset(str(demo_out), "ct", split="train")
    assert sorted(ds["id"]) == sorted(direct["id"])
    assert ds.features == FEATURES
    row = ds[0]
    assert row["image"].size == (row["width"], row["height"])


def test_the_row_written_by_pyarrow_alone_is_the_row_datasets_declares() -> None:
    """The pipeline writes shards with a schema made without ``datasets``; ``datasets`` must read it as its own."""
    import datasets

    import medtrinity_25m as m

    assert m.ARROW_SCHEMA.equals(FEATURES.arrow_schema, check_metadata=True)
    assert datasets.Features.from_arrow_schema(m.ARROW_SCHEMA) == FEATURES
    for spec, features in ((m.ROW, FEATURES), (m.WEBDATASET_ROW, WEBDATASET_FEATURES)):
        assert m.yaml_features(spec) == datasets.DatasetInfo(features=features)._to_yaml_dict()["features"]


def test_a_build_never_imports_datasets_or_pandas(tmp_path: Path) -> None:
    """``datasets`` takes seconds to import: a build (and its card) needs only the row, never the library; nor
    pandas, which pyarrow would import (0.4 s) only to ask whether rows are pandas objects; nor, reading NIfTI,
    pydicom, which nibabel would import (0.3 s) only to parse DICOM header extensions."""
    import subprocess
    import sys

    from conftest import COLIN, need, write_manifest

    manifest = write_manifest(tmp_path, {
        "name": "colin", "format": "nifti", "modality": "mri", "images": str(need(COLIN / "ch2.nii.gz")),
        "masks": str(COLIN / "aal.nii.gz"), "slicing": {"plane": "axial", "step": 40, "only_with_roi": True}})
    probe = ("import sys, runpy; sys.argv = ['medtri-build', 'build', sys.argv[1], '--out', sys.argv[2], "
             "'--workers', '1', '--quiet']\ntry:\n    runpy.run_module('builder', run_name='__main__')\n"
             "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
             "print('datasets' in sys.modules, 'pandas' in sys.modules, 'pydicom' in sys.modules)\n"
             "import pyarrow as pa\nprint(type(pa.table({'a': [1]}).to_pandas()).__name__)")
    done = subprocess.run([sys.executable, "-c", probe, str(manifest), str(tmp_path / "out")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-2:] == ["False False False", "DataFrame"]  # pandas still there when asked
    assert (tmp_path / "out" / "README.md").is_file() and list((tmp_path / "out" / "data").rglob("*.parquet"))
