"""Contracts every registry entry must keep: a new entry is tested by being registered.

Each test is parametrized over a registry's names, so an adapter, output format,
engine, describer, exporter, proposer or reader added to a registry runs here.
The toy format and the toy source at the end show that adding one touches one
module (here: this file) plus its registration.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import nibabel as nib
import numpy as np
import pytest
from conftest import MEDPIX, build, dicom_file, need, run_cli, shard_rows, write_manifest
from PIL import Image

from builder.dataset.export import EXPORTERS
from builder.errors import ManifestError, Reject
from builder.formats import FORMATS
from builder.formats.base import OutputFormat, ShardLimits, ShardStream, temp_path
from builder.pipeline.data import DescribeRequest, Record, Unit
from builder.pipeline.engines import ENGINES
from builder.pipeline.proposers import PROPOSERS, ProposalInput, RoiConfig
from builder.pipeline.readers import READERS
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.base import FileSource
from builder.pipeline.sources.options import ImageOptions, parse_options
from builder.pipeline.text.options import TextOptions
from builder.pipeline.text.registry import DESCRIBERS
from medtrinity_25m import ATTRIBUTE_KEYS, FEATURES, ROW


def _png(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)).save(folder / "a.png")
    return {"format": "image", "images": f"{folder.name}/*.png", "modality": "xray"}


def _dicom(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.dcm").write_bytes(dicom_file("CT_small.dcm").read_bytes())
    return {"format": "dicom", "images": f"{folder.name}/*.dcm"}


def _nifti(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.arange(8 * 8 * 3, dtype=np.int16).reshape(8, 8, 3), np.eye(4)), folder / "a.nii.gz")
    return {"format": "nifti", "images": f"{folder.name}/*.nii.gz", "modality": "mri"}


def _nrrd(folder: Path) -> dict[str, Any]:
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.arange(3 * 8 * 8, dtype=np.int16).reshape(3, 8, 8))  # (k, j, i)
    image.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(image, str(folder / "a.nrrd"))
    return {"format": "volume", "images": f"{folder.name}/*.nrrd", "modality": "mri"}


def _nnunet(folder: Path) -> dict[str, Any]:
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    label = np.zeros((8, 8, 3), np.uint8)
    label[2:5, 2:6, 1] = 1
    nib.save(nib.Nifti1Image(np.arange(8 * 8 * 3, dtype=np.int16).reshape(8, 8, 3), np.eye(4)),
             folder / "imagesTr" / "case_0000.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), folder / "labelsTr" / "case.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                                                     "labels": {"background": 0, "organ": 1}, "numTraining": 1}))
    return {"format": "nnunet", "root": str(folder)}


def _coco(folder: Path) -> dict[str, Any]:
    _png(folder / "images")
    (folder / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 12, "height": 10}],
        "categories": [{"id": 1, "name": "lesion"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 3], "iscrowd": 0,
                         "segmentation": [[2, 2, 6, 2, 6, 5, 2, 5]]}]}))
    return {"format": "coco", "annotations": str(folder / "coco.json"), "images": str(folder / "images"),
            "modality": "xray"}


def _voc(folder: Path) -> dict[str, Any]:
    _png(folder / "JPEGImages")
    (folder / "Annotations").mkdir()
    (folder / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>cell</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
        "<xmax>6</xmax><ymax>5</ymax></bndbox></object></annotation>")
    return {"format": "voc", "root": str(folder), "modality": "microscopy"}


def _yolo(folder: Path) -> dict[str, Any]:
    _png(folder / "train" / "images")
    (folder / "train" / "labels").mkdir()
    (folder / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.3\n")
    (folder / "data.yaml").write_text("train: train/images\nnames: [cell]\n")
    return {"format": "yolo", "root": str(folder), "modality": "microscopy"}


def _medpix(folder: Path) -> dict[str, Any]:
    test = MEDPIX / "test"
    if not test.exists():
        pytest.skip(f"reference data {test} is absent (it lives in ../shared/data beside the repository)")
    return {"format": "medpix", "root": str(test)}


def _medtrinity(folder: Path) -> dict[str, Any]:
    from medtrinity_replica import make_demo

    images = sorted((need(MEDPIX / "test") / "images").glob("*.png"))[:3]
    make_demo(folder / "release", images)
    return {"format": "medtrinity", "root": str(folder / "release"), "subset": "25M_demo"}


#: A small real input of every source format; a new format adds one here.
SAMPLES: dict[str, Callable[[Path], dict[str, Any]]] = {"image": _png, "dicom": _dicom, "nifti": _nifti,
                                                         "volume": _nrrd, "medpix": _medpix,
                                                         "medtrinity": _medtrinity, "nnunet": _nnunet, "coco": _coco,
                                                         "voc": _voc, "yolo": _yolo}


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_source_format_declares_options_and_builds_rows(name: str, tmp_path: Path) -> None:
    adapter = ADAPTERS[name]
    assert dataclasses.is_dataclass(adapter.options)
    for field in dataclasses.fields(adapter.options):
        if "parse" in field.metadata:
            assert callable(field.metadata["parse"]), field.name
    required = [f.name for f in dataclasses.fields(adapter.options) if f.metadata.get("required")]
    if required:
        with pytest.raises(ManifestError, match=required[0]):
            parse_options(adapter.options, {}, tmp_path)
    assert name in SAMPLES, f"source format {name!r} has no sample input in tests/test_contracts.py"
    entry = {"name": f"contract-{name}", **SAMPLES[name](tmp_path / "in")}
    summary = build(write_manifest(tmp_path, entry), tmp_path / "out")
    assert summary["rows"]["total"] > 0
    assert run_cli("verify", tmp_path / "out", "--no-decode").exit_code == 0


def _row(i: int) -> dict[str, Any]:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), i, np.uint8)).save(buf, format="PNG")
    return {"id": f"c-{i}", "image": {"bytes": buf.getvalue(), "path": None}, "mask": None, "modality": "ct",
            "organ": "x", "disease": None, "rois": [], "coarse_caption": "c", "caption": "c", "attributes": None,
            "knowledge": [], "reference": None, "case_id": None, "location": None, "details": None, "source": "s",
            "source_file": "f", "plane": None, "slice_index": None, "width": 8, "height": 8, "license": "l"}


@pytest.mark.parametrize("name", FORMATS.names())
def test_every_output_format_writes_names_and_reads_back_its_rows(name: str, tmp_path: Path) -> None:
    spec = FORMATS[name]
    assert spec.name == name and spec.folder and spec.extension
    writer = spec.writer(tmp_path / spec.folder / "ct", "ct", "train", "train-g00000", ShardLimits(max_rows=2))
    for i in range(3):
        writer.write(_row(i))
    shards = writer.close()
    assert [s.rows for s in shards] == [2, 1] and {s.format for s in shards} == {name}
    found = [row_id for shard in shards for row_id, problem in spec.rows(shard.path, True) if problem is None]
    assert sorted(found) == ["c-0", "c-1", "c-2"]
    assert spec.final_name("train", 0, 2) != spec.final_name("train", 1, 2)
    assert Path(spec.final_name("train", 0, 2)).match(Path(spec.data_files("ct", "train")).name)
    assert set(spec.features) >= {"json"} or set(spec.features) == set(FEATURES)  # the row the card declares


@pytest.mark.parametrize("name", ENGINES.names())
def test_every_engine_maps_units_in_order_and_closes(name: str, tmp_path: Path) -> None:
    if name == "ray":
        pytest.importorskip("ray", reason="--engine ray needs the ray extra")
    options_cls = ENGINES[name].options
    assert dataclasses.is_dataclass(options_cls)
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((10, 12), i * 20, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "e", "format": "image", "images": "img/*.png",
                                              "modality": "xray"}), out, "--engine", name, "--workers", "2")
    assert summary["engine"]["engine"] == name
    assert summary["rows"]["total"] == 5


@pytest.mark.parametrize("name", DESCRIBERS.names())
def test_every_describer_says_where_it_runs_and_answers_the_five_attributes(name: str) -> None:
    entry = DESCRIBERS[name]
    assert entry.where in ("worker", "main")
    if entry.where == "main":  # a model describer needs its model: without it, a clear error
        with pytest.raises(ValueError, match="--"):
            entry.make(TextOptions(describer=name))
        return
    describer = entry.make(TextOptions(describer=name))
    request = DescribeRequest(id="x", modality="ct", organ="liver", disease="", plane="axial", slice_index=3,
                              coarse_caption="CT of the liver", rois=[], stats=[], view="radiological")
    answer = describer.describe(request)
    assert set(answer) == set(ATTRIBUTE_KEYS) and answer["modality"]
    assert describer.info()["name"] == describer.name == name


@pytest.mark.parametrize("name", EXPORTERS.names())
def test_every_exporter_writes_inside_its_folder(name: str, demo_out: Path, tmp_path: Path) -> None:
    from builder.dataset.export import ExportError

    dest = tmp_path / "export"
    dest.mkdir()
    try:
        count = EXPORTERS[name].run(demo_out, dest, None, EXPORTERS[name].options())
    except ExportError as exc:  # an exporter of one release's shape refuses other datasets, saying why
        assert "holds no" in str(exc)
        assert all(dest in p.parents for p in tmp_path.rglob("*") if p.is_file())
        return
    assert count > 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(dest in p.parents for p in written)


@pytest.mark.parametrize("name", PROPOSERS.names())
def test_every_proposer_is_named_by_its_key_and_refuses_a_config_it_cannot_run(name: str) -> None:
    proposer = PROPOSERS[name]
    assert proposer.name == name
    pixels = np.zeros((32, 32), np.uint8)
    pixels[8:24, 8:24] = 200
    item = ProposalInput("0", pixels, "ct", "region")
    try:
        found = proposer.propose([item], RoiConfig(method=name))
    except Reject as exc:  # a model or command it needs is not configured
        assert exc.stage == "roi" and exc.reason
    else:
        assert len(found) == 1 and found[0] and found[0][0].mask is not None


SAMPLE_FILES: dict[str, Callable[[Path], Path]] = {
    "dicom": lambda d: Path(dicom_file("CT_small.dcm")),
    "nifti": lambda d: _nifti(d) and d / "a.nii.gz",
    "image": lambda d: _png(d) and d / "a.png",
    "itk": lambda d: _nrrd(d) and d / "a.nrrd",
}


@pytest.mark.parametrize("name", READERS.names())
def test_every_reader_gives_an_array_and_plain_meta(name: str, tmp_path: Path) -> None:
    reader = READERS[name]
    assert reader.suffixes
    array, meta = reader.read(SAMPLE_FILES[name](tmp_path / "in"))
    assert array.ndim >= 2 and array.size > 0
    json.dumps({k: v for k, v in meta.items() if k != "notes"}, default=float)


# --- a toy output format: JSON lines with the image as hex -------------------------------------------------------

class JsonlShardWriter(ShardStream):
    format = "jsonl"
    extension = "jsonl"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handle: Any = None

    def write(self, row: dict[str, Any]) -> None:
        if self.handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.handle = open(temp_path(self._final()), "w", encoding="utf-8")  # noqa: SIM115
        self.handle.write(json.dumps({"id": row["id"], "png": row["image"]["bytes"].hex()}) + "\n")
        if self.rolling.full_after(row):
            self.close()

    def close(self) -> list:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            self._published()
        return self.shards


def _jsonl_rows(path: Path, decode: bool) -> Iterator[tuple[str, str | None]]:
    for line in path.read_text().splitlines():
        yield json.loads(line)["id"], None


JSONL = OutputFormat(name="jsonl", folder="jsonl", extension="jsonl",
                     final_pattern="{split}-{index:05d}-of-{total:05d}.jsonl", writer=JsonlShardWriter,
                     features=ROW, rows=_jsonl_rows)


def test_a_toy_output_format_is_one_module_plus_its_registration(tmp_path: Path) -> None:
    FORMATS.register("jsonl", JSONL)
    try:
        entry = {"name": "toy", **_png(tmp_path / "in")}
        summary = build(write_manifest(tmp_path, entry), tmp_path / "out", "--format", "jsonl")
        assert [s["path"] for s in summary["shards"]] == ["jsonl/xray/train-00000-of-00001.jsonl"]
        assert run_cli("verify", tmp_path / "out").exit_code == 0
        assert "jsonl/xray/train-*.jsonl" in (tmp_path / "out" / "README.md").read_text()
    finally:
        FORMATS.unregister("jsonl")


# --- a toy source format: .npy arrays ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NpyOptions(ImageOptions):
    """``format: npy``: 2D arrays saved with numpy."""


class NpySource(FileSource):
    options = NpyOptions

    def records(self, unit: Unit) -> Iterator[Record]:
        yield Record(unit=unit, pixels=np.load(unit.image).astype(np.uint8), labelmap=None,
                     modality=unit.spec.modality or "")


def test_a_toy_source_format_is_one_module_plus_its_registration(tmp_path: Path) -> None:
    ADAPTERS.register("npy", NpySource())
    try:
        (tmp_path / "in").mkdir()
        np.save(tmp_path / "in" / "a.npy", np.arange(100, dtype=np.uint8).reshape(10, 10))
        summary = build(write_manifest(tmp_path, {"name": "toy", "format": "npy", "images": "in/*.npy",
                                                  "modality": "microscopy"}), tmp_path / "out")
        assert summary["rows"]["by_modality"] == {"microscopy": 1}
        (row,) = shard_rows(tmp_path / "out", "microscopy")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))),
                              np.arange(100, dtype=np.uint8).reshape(10, 10))
    finally:
        ADAPTERS.unregister("npy")


def test_a_plugin_package_adds_a_registry_entry_and_never_replaces_a_built_in_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package declaring ``[project.entry-points."medtrinity_25m.<kind>"]`` is found as an installed
    distribution would be; a name the registry has already is its own entry, whatever plugins say."""
    import sys

    from builder.registry import Registry, installed_entry_points

    info = tmp_path / "medtri_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: medtri-plugin-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[medtrinity_25m.demo_kind]\nextra = medtri_plugin_demo:EXTRA\n"
                                           "built_in = medtri_plugin_demo:EXTRA\n")
    (tmp_path / "medtri_plugin_demo.py").write_text("EXTRA = 'from the plugin'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    installed_entry_points.cache_clear()
    try:
        registry = Registry("demo_kind", {"built_in": "built in"})
        assert registry["built_in"] == "built in"
        assert "extra" in registry and registry["extra"] == "from the plugin"
        assert registry.names() == ["built_in", "extra"] and registry["built_in"] == "built in"
        with pytest.raises(KeyError, match="'missing' is not one of built_in, extra"):
            registry["missing"]
    finally:
        installed_entry_points.cache_clear()
        sys.modules.pop("medtri_plugin_demo", None)
