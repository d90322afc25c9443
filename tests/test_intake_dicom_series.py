"""``format: dicom`` with ``series: volume``: a CT series with its RTSTRUCT, and RT objects that are not images.

Real files of ``../shared/data/intake-dev/dicom-rt`` (its README gives the numbers checked here). The expected masks
are rasterised in the test from the structure set with pydicom and scikit-image's polygon, slices matched by the SOP
Instance UID each contour names; the expected order of slices is the files' z positions read with pydicom.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SHARED, build, need, rejects, run_cli, shard_rows, write_manifest
from PIL import Image

INTAKE = SHARED / "intake-dev"
ANON = INTAKE / "dicom-rt" / "DicomRTTool" / "AnonDICOM"
PYDICOM_RT = INTAKE / "dicom-rt" / "pydicom" / "test_files"



def reference_masks() -> tuple[list[Path], dict[str, np.ndarray]]:
    """The CT files in z order, and per ROI name a (K, H, W) mask drawn from its contours."""
    from skimage.draw import polygon

    files = sorted((p for p in ANON.glob("CT_*.dcm")), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    slices = [pydicom.dcmread(p) for p in files]
    by_uid = {ds.SOPInstanceUID: k for k, ds in enumerate(slices)}
    structure = pydicom.dcmread(ANON / "RS_Body_SpinalCord.dcm")
    names = {item.ROINumber: item.ROIName for item in structure.StructureSetROISequence}
    masks: dict[str, np.ndarray] = {}
    for roi in structure.ROIContourSequence:
        for contour in roi.ContourSequence:
            k = by_uid[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            ds = slices[k]
            points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
            x0, y0 = float(ds.ImagePositionPatient[0]), float(ds.ImagePositionPatient[1])
            dy, dx = (float(v) for v in ds.PixelSpacing)  # row spacing, column spacing; orientation is identity
            rr, cc = polygon((points[:, 1] - y0) / dy, (points[:, 0] - x0) / dx, shape=(ds.Rows, ds.Columns))
            mask = masks.setdefault(names[roi.ReferencedROINumber], np.zeros((len(files), ds.Rows, ds.Columns), bool))
            mask[k, rr, cc] ^= True
    return files, masks


def test_a_series_with_its_structure_set_gives_one_row_per_slice_in_z_order(tmp_path: Path) -> None:
    need(ANON)
    summary = build(write_manifest(tmp_path, {"name": "rt", "format": "dicom", "series": "volume",
                                              "images": f"{ANON}/*"}), tmp_path / "out")
    files, masks = reference_masks()
    rows = sorted(shard_rows(tmp_path / "out"), key=lambda r: r["slice_index"])
    assert [r["slice_index"] for r in rows] == [0, 1, 2, 3] and [p.name for p in files] == \
        ["CT_2.dcm", "CT_4.dcm", "CT_1.dcm", "CT_3.dcm"]
    assert summary["skipped"] == {"side file (not DICOM)": 2} and not rejects(tmp_path / "out")
    for k, row in enumerate(rows):
        boxes = {roi["label"]: roi["bbox"] for roi in row["rois"]}
        for name, mask in masks.items():
            ys, xs = np.nonzero(mask[k])
            assert boxes[name] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], (k, name)
        stored = np.asarray(Image.open(BytesIO(row["image"]["bytes"]))).astype(float)
        hu = pydicom.dcmread(files[k]).pixel_array.astype(float)
        assert np.corrcoef(stored.ravel(), hu.ravel())[0, 1] > 0.9  # the slice of that z, not another
    first = {roi["label"]: roi["bbox"] for roi in rows[0]["rois"]}
    assert first == {"BODY": [87.0, 198.0, 455.0, 368.0], "SpinalCord": [244.0, 271.0, 259.0, 284.0]}  # README
    # the cord lies inside the body: both ROIs stay whole in the stored mask (the smaller painted last)
    stored_mask = np.asarray(Image.open(BytesIO(rows[0]["mask"]["bytes"])))
    assert (stored_mask > 0).sum() == (masks["BODY"][0] | masks["SpinalCord"][0]).sum()


def test_rt_objects_without_their_series_are_accounted_and_nothing_crashes(tmp_path: Path) -> None:
    need(PYDICOM_RT)
    result = run_cli("build", write_manifest(tmp_path, {"name": "rt", "format": "dicom", "series": "volume",
                                                        "images": f"{PYDICOM_RT}/*"}), "--out", tmp_path / "out",
                     "--workers", "1", "--quiet", ok=False)
    assert result.exit_code == 1 and "wrote no rows" in result.output
    import json

    summary = json.loads((tmp_path / "out" / "build.json").read_text())
    assert summary["skipped"] == {"DICOM RTDOSE (not an image)": 1, "DICOM RTPLAN (not an image)": 1}
    (line,) = rejects(tmp_path / "out")
    assert line["file"].endswith("rtstruct.dcm") and "series is not among the inputs" in line["reason"]


def test_a_series_resliced_in_another_plane_keeps_its_masks(tmp_path: Path) -> None:
    need(ANON)
    build(write_manifest(tmp_path, {"name": "rt", "format": "dicom", "series": "volume", "images": f"{ANON}/CT_*",
                                    "rtstruct": f"{ANON}/RS_*.dcm",
                                    "slicing": {"plane": "coronal", "only_with_roi": True}}), tmp_path / "out")
    _, masks = reference_masks()
    cord = masks["SpinalCord"]  # (k, row, column): LPS rows run posterior, the coronal index anterior -> posterior
    rows_with_cord = np.nonzero(cord.any(axis=(0, 2)))[0]
    found = sorted(r["slice_index"] for r in shard_rows(tmp_path / "out") if any(
        roi["label"] == "SpinalCord" for roi in r["rois"]))
    assert len(found) == len(rows_with_cord)
    assert sorted(511 - rows_with_cord) == found  # coronal index counts from posterior (RAS+: A increases)


def test_file_by_file_rt_objects_and_side_files_are_counted_not_rejected(tmp_path: Path) -> None:
    import json

    need(ANON)
    need(PYDICOM_RT)
    build(write_manifest(tmp_path, {"name": "rt", "format": "dicom", "images": f"{PYDICOM_RT}/*"},
                         {"name": "ct", "format": "dicom", "images": f"{ANON}/*"}), tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "build.json").read_text())
    assert summary["skipped"] == {"DICOM RTDOSE (not an image)": 1, "DICOM RTPLAN (not an image)": 1,
                                  "DICOM RTSTRUCT (not an image)": 2, "side file (not DICOM)": 2}
    assert summary["files"] == {"seen": 4, "accepted": 4, "rejected": 0, "skipped": 6}
    assert not rejects(tmp_path / "out")  # rtstruct.dcm has no preamble: still read as the dataset it is


def test_a_label_volume_on_the_series_grid_masks_it(tmp_path: Path) -> None:
    import nibabel as nib

    need(ANON)
    build(write_manifest(tmp_path, {"name": "ct", "format": "dicom", "series": "volume", "images": f"{ANON}/CT_*",
                                    "masks": f"{ANON}/Mask.nii.gz", "labels": {1: "spinalcord", 2: "body"}}),
          tmp_path / "out")
    labels = np.asanyarray(nib.as_closest_canonical(nib.load(ANON / "Mask.nii.gz")).dataobj)  # independent: nibabel
    rows = sorted(shard_rows(tmp_path / "out"), key=lambda r: r["slice_index"])
    assert len(rows) == labels.shape[2] == 4
    for k, row in enumerate(rows):
        shown = labels[::-1, ::-1, k].T
        for value, name in ((1, "spinalcord"), (2, "body")):
            ys, xs = np.nonzero(shown == value)
            assert {r["label"]: r["bbox"] for r in row["rois"]}[name] == [xs.min(), ys.min(), xs.max() + 1,
                                                                           ys.max() + 1]
    first = {r["label"]: r["bbox"] for r in rows[0]["rois"]}  # the README's DicomRTTool boxes at z 1000
    assert first == {"body": [87.0, 198.0, 456.0, 369.0], "spinalcord": [243.0, 270.0, 260.0, 284.0]}


def test_a_seg_of_some_slices_masks_those_slices_of_the_series(tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    from pydicom.data import get_testdata_file
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    (tmp_path / "in" / "seg").mkdir(parents=True)
    series, sources = generate_uid(), []
    for k, z in enumerate((-10.0, 0.0, 10.0)):  # written out of order on purpose: k is not the file order
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), series
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.save_as(tmp_path / "in" / f"slice_{2 - k}.dcm")
        sources.append(ds)
    mask = np.zeros((3, sources[0].Rows, sources[0].Columns), np.uint8)
    mask[0, 10:20, 30:50] = 1
    mask[2, 40:45, 5:25] = 1
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Liver, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=2,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1").save_as(tmp_path / "in" / "seg" / "lesion.dcm")
    build(write_manifest(tmp_path, {"name": "s", "format": "dicom", "series": "volume", "images": "in/*.dcm",
                                    "segmentations": "in/seg/*.dcm"}), tmp_path / "out")
    rows = {r["slice_index"]: [(roi["label"], roi["bbox"]) for roi in r["rois"]] for r in shard_rows(tmp_path / "out")}
    assert rows == {0: [("lesion", [30.0, 10.0, 50.0, 20.0])], 1: [], 2: [("lesion", [5.0, 40.0, 25.0, 45.0])]}


def test_slices_without_a_series_uid_group_by_folder_and_geometry(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        for k in range(3):
            ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
            ds.SOPInstanceUID = generate_uid()
            del ds.SeriesInstanceUID
            ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.save_as(tmp_path / "in" / folder / f"{k}.dcm")
    summary = build(write_manifest(tmp_path, {"name": "s", "format": "dicom", "series": "volume",
                                              "images": "in/*/*.dcm"}), tmp_path / "out")
    assert summary["files"]["accepted"] == 2 and summary["rows"]["total"] == 6  # two volumes of three slices


@pytest.mark.parametrize("series", ["file", "volume"])
def test_a_dicomdir_beside_the_images_is_counted_not_rejected(series: str, tmp_path: Path) -> None:
    import json

    from pydicom.data import get_testdata_file

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "DICOMDIR").write_bytes(Path(get_testdata_file("DICOMDIR")).read_bytes())
    (tmp_path / "in" / "IM0001").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    build(write_manifest(tmp_path, {"name": "s", "format": "dicom", "series": series, "images": "in/*"}),
          tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "build.json").read_text())
    assert summary["skipped"] == {"DICOM media index (DICOMDIR)": 1} and not rejects(tmp_path / "out")
    assert summary["rows"]["total"] == 1
