"""Real scanner DICOM read right, checked against references computed here (pydicom + DICOM's formulas,
dcm2niix's NIfTIs), never against the reader's own output."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import SHARED, build, dicom_file, need, real_files, rejects, shard_rows, write_manifest
from PIL import Image

REAL = SHARED / "real-dicom"


def linear_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2, LINEAR, onto 0..255 (written here from the standard, not imported)."""
    x = x.astype(np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0, np.where(x > c - 0.5 + (w - 1) / 2, 255, y))
    return np.rint(y)


def _stored(out: Path, config: str = "all") -> dict[str, list[tuple[Any, np.ndarray, dict]]]:
    """input file -> [(slice_index, pixels, row)] in slice order."""
    files = real_files(out)
    found: dict[str, list] = {}
    for row in shard_rows(out, config):
        pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
        found.setdefault(files[row["id"]], []).append((row["slice_index"], pixels, row))
    return {k: sorted(v, key=lambda t: t[0] or 0) for k, v in found.items()}


def _build(tmp_path: Path, files: dict[str, Path], **entry: Any) -> Path:
    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        (tmp_path / "in" / name).write_bytes(Path(path).read_bytes())
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "scan", "format": "dicom", "images": "in/*", **entry}), out)
    return out


def _within_one(ours: np.ndarray, reference: np.ndarray) -> bool:
    return ours.shape == reference.shape and float(np.abs(ours.astype(float) - reference).max()) <= 1.0


def test_palette_colour_is_scaled_by_the_lut_bit_depth(tmp_path: Path) -> None:
    from pydicom.pixels import apply_color_lut

    path = dicom_file("OBXXXX1A.dcm")
    out = _build(tmp_path, {"us.dcm": path}, burned_in="flag")  # OCR's finds kept: the pixels are compared whole
    ((_, pixels, _),) = _stored(out)["in/us.dcm"]
    ds = pydicom.dcmread(path)
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    reference = (apply_color_lut(ds.pixel_array, ds).astype(np.uint32) >> (bits - 8)).astype(np.uint8)
    reference[:59] = 0  # deid's rule for this scanner blacks out its text band
    assert _within_one(pixels, reference)
    assert pixels[59:].max() > 200, "not (nearly) black"


def test_enhanced_ct_rescale_from_the_functional_groups(tmp_path: Path) -> None:
    path = dicom_file("eCT_Supplemental.dcm")
    out = _build(tmp_path, {"ect.dcm": path}, allow_burned_in=True)
    ds = pydicom.dcmread(path)
    rows = _stored(out)["in/ect.dcm"]
    assert len(rows) == int(ds.NumberOfFrames)
    for index, pixels, _ in rows:
        hu = ds.pixel_array[index] * _group(ds, index, "PixelValueTransformationSequence", "RescaleSlope", 1) + \
            _group(ds, index, "PixelValueTransformationSequence", "RescaleIntercept", 0)
        assert hu.min() == -1024  # the intercept that sits only in the functional groups
        c = _group(ds, index, "FrameVOILUTSequence", "WindowCenter", None)
        w = _group(ds, index, "FrameVOILUTSequence", "WindowWidth", None)
        assert _within_one(pixels, linear_window(hu, c, w))
        assert pixels.mean() < 200, "not the white image of a window on raw values"


def test_multi_frame_mr_frames_each_displayed(tmp_path: Path) -> None:
    path = dicom_file("emri_small.dcm")
    out = _build(tmp_path, {"emr.dcm": path})
    ds = pydicom.dcmread(path)
    rows = _stored(out)["in/emr.dcm"]
    assert len(rows) == 10
    for index, pixels, _ in rows:
        values = ds.pixel_array[index] * _group(ds, index, "PixelValueTransformationSequence", "RescaleSlope", 1) + \
            _group(ds, index, "PixelValueTransformationSequence", "RescaleIntercept", 0)
        c = _group(ds, index, "FrameVOILUTSequence", "WindowCenter", None)
        w = _group(ds, index, "FrameVOILUTSequence", "WindowWidth", None)
        if c is None:  # this copy has no window: the documented rule, the frame's 0.5-99.5 percentiles
            low, high = np.percentile(values, [0.5, 99.5])
            reference = np.rint(np.clip((values - low) / (high - low) * 255, 0, 255))
        else:
            reference = linear_window(values, c, w)
        assert _within_one(pixels, reference)
    assert len({p.tobytes() for _, p, _ in rows}) == 10


def _group(ds: Any, index: int, sequence: str, keyword: str, default: Any) -> Any:
    """A frame's attribute: per-frame functional group, else shared, else the top level (read here)."""
    for name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(name)
        if groups:
            group = groups[index] if name.startswith("Per") else groups[0]
            if sequence in group and keyword in group[sequence][0]:
                return float(group[sequence][0][keyword].value)
    return float(ds[keyword].value) if keyword in ds else default


def _match(ours: list[np.ndarray], raw: np.ndarray, windows: list[tuple[float, float]]) -> bool:
    """Our slices equal the reference volume's, each through its frame's window (to one grey level),
    under one fixed flip/transpose and slice order."""
    transforms = [lambda a: a, np.flipud, np.fliplr, lambda a: np.flipud(np.fliplr(a))]
    transforms += [lambda a, t=t: t(a.T) for t in transforms[:]]
    for transform in transforms:
        for order in (range(raw.shape[2]), range(raw.shape[2] - 1, -1, -1)):
            slices = [transform(raw[:, :, k]) for k in order]
            if len(slices) == len(ours) and all(_within_one(o, linear_window(s, *w))
                                                for o, s, w in zip(ours, slices, windows)):
                return True
    return False


@pytest.mark.parametrize(("name", "ref"), [("12bitUnsigned.dcm", "2"), ("12bitUnsigned_0x0F0F.dcm", "3"),
                                           ("12bitSigned_0x0F0F.dcm", "4")])
def test_siemens_mosaics_are_demosaiced_like_dcm2niix(tmp_path: Path, name: str, ref: str) -> None:
    folder = need(REAL / "dcm_qa_12bit")
    path = folder / "In" / name
    out = _build(tmp_path, {"mosaic.dcm": path})
    ds = pydicom.dcmread(path)
    rows = _stored(out)["in/mosaic.dcm"]
    assert len(rows) == 35 and all(r["plane"] == "axial" for _, _, r in rows)
    assert all(p.shape == (64, 64) for _, p, _ in rows)
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    raw = np.asanyarray(nib.load(folder / "Ref" / f"{ref}.nii").dataobj).astype(np.float64)
    window = (float(ds.WindowCenter), float(ds.WindowWidth))
    assert _match([p for _, p, _ in rows], raw * slope + intercept, [window] * len(rows))


def test_siemens_xa_enhanced_mr_matches_dcm2niix(tmp_path: Path) -> None:
    folder = need(REAL / "dcm_qa_enh")
    files = {p.name: p for p in sorted((folder / "In" / "Siemens" / "XA10").glob("*.dcm"))}
    out = _build(tmp_path, files)
    raw = np.asanyarray(nib.load(folder / "Ref" / "Siemens_REST1_w_SMS_PF7-8_6.nii").dataobj).astype(np.float64)
    stored = _stored(out)
    for name, path in files.items():
        ds = pydicom.dcmread(path)
        windows = [(_group(ds, i, "FrameVOILUTSequence", "WindowCenter", None),
                    _group(ds, i, "FrameVOILUTSequence", "WindowWidth", None)) for i in range(6)]
        ours = [p for _, p, _ in stored[f"in/{name}"]]
        assert len(ours) == 6
        assert any(_match(ours, raw[..., t], windows) for t in range(raw.shape[3])), name
        assert all(r["plane"] is not None for _, _, r in stored[f"in/{name}"])


def test_a_pacs_that_renamed_private_tags_gives_the_same_pixels(tmp_path: Path) -> None:
    folder = need(REAL / "dcm_qa_agfa")
    one = _build(tmp_path / "siemens", {"a.dcm": folder / "Siemens" / "011-0001.img"})
    two = _build(tmp_path / "agfa", {"a.dcm": folder / "Agfa" / "011-0001.img"})
    a, b = _stored(one)["in/a.dcm"], _stored(two)["in/a.dcm"]
    assert len(a) == len(b) == 25 and all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))


def test_narrow_windows_follow_the_dicom_formula(tmp_path: Path) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 40, 3
    (tmp_path / "src").mkdir()
    ds.save_as(tmp_path / "src" / "narrow.dcm")
    out = _build(tmp_path, {"narrow.dcm": tmp_path / "src" / "narrow.dcm"})
    ((_, pixels, _),) = _stored(out)["in/narrow.dcm"]
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert _within_one(pixels, linear_window(hu, 40, 3))


def test_a_malformed_modality_lut_and_blank_frames_are_rejects_with_reasons(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    (tmp_path / "src").mkdir()
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    item = Dataset()
    item.add_new(0x00283002, "US", [])  # LUTDescriptor, empty
    item.add_new(0x00283006, "US", [0, 1])  # LUTData
    item.ModalityLUTType = "HU"
    ds.ModalityLUTSequence = Sequence([item])
    ds.save_as(tmp_path / "src" / "badlut.dcm")
    blank = pydicom.dcmread(dicom_file("CT_small.dcm"))
    blank.PixelData = np.zeros((blank.Rows, blank.Columns), np.int16).tobytes()
    blank.save_as(tmp_path / "src" / "blank.dcm")
    out = _build(tmp_path, {n: tmp_path / "src" / n for n in ("badlut.dcm", "blank.dcm")} |
                 {"fine.dcm": dicom_file("CT_small.dcm")})
    lines = {Path(line["file"]).name: line for line in rejects(out)}
    assert set(lines) == {"badlut.dcm", "blank.dcm"}
    assert lines["badlut.dcm"]["stage"] == "read" and "Modality LUT" in lines["badlut.dcm"]["reason"]
    assert "blank" in lines["blank.dcm"]["reason"]


def test_dicom_seg_segments_become_labelled_rois(tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes

    source = pydicom.dcmread(dicom_file("CT_small.dcm"))
    mask = np.zeros((1, source.Rows, source.Columns), np.uint8)
    mask[0, 30:60, 40:90], mask[0, 80:100, 10:30] = 1, 2
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=label, segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Liver, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, label in ((1, "liver"), (2, "lesion"))]
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=2,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1")
    (tmp_path / "in" / "seg").mkdir(parents=True)
    seg.save_as(tmp_path / "in" / "seg" / "liver_seg.dcm")
    out = _build(tmp_path, {"ct.dcm": dicom_file("CT_small.dcm")}, images="in/*.dcm", segmentations="in/seg/*.dcm")
    ((_, _, row),) = _stored(out)["in/ct.dcm"]
    boxes = {roi["label"]: roi["bbox"] for roi in row["rois"]}
    assert boxes == {"liver": [40, 30, 90, 60], "lesion": [10, 80, 30, 100]}
    assert row["mask"] is not None


def test_modality_map_admits_codes_without_a_config(tmp_path: Path) -> None:
    out = _build(tmp_path, {"sc.dcm": dicom_file("SC_rgb.dcm"), "ct.dcm": dicom_file("CT_small.dcm")},
                 modality_map={"OT": "pathology"}, allow_burned_in=True)
    assert {r["modality"] for r in shard_rows(out, "pathology")} == {"pathology"}
    assert len(shard_rows(out, "ct")) == 1


def _cine(path: Path, frames: int = 5) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    rng = np.random.default_rng(0)
    ds.PixelData = rng.integers(0, 1000, (frames, ds.Rows, ds.Columns), dtype=np.int16).tobytes()
    ds.NumberOfFrames = frames
    ds.FrameTime = 33.3
    ds.Modality = "US"
    ds.save_as(path)


@pytest.mark.parametrize(("frames", "kept"), [(None, [2]), ("all", [0, 1, 2, 3, 4]), ("every 2", [0, 2, 4])])
def test_a_cine_keeps_its_middle_frame_unless_the_source_says(tmp_path: Path, frames: str | None,
                                                              kept: list[int]) -> None:
    (tmp_path / "src").mkdir()
    _cine(tmp_path / "src" / "clip.dcm")
    extra = {"frames": frames} if frames else {}
    out = _build(tmp_path, {"clip.dcm": tmp_path / "src" / "clip.dcm"}, **extra)
    assert [i for i, _, _ in _stored(out)["in/clip.dcm"]] == kept


def test_4d_series_volume_choice_nan_policy_and_spacing(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = np.random.default_rng(1).normal(100, 10, (12, 10, 4, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.8, 2.0, 1.0])), folder / "fmri.nii.gz")
    nanned = data[..., 0].copy()
    nanned[0, 0, :] = np.nan
    nib.save(nib.Nifti1Image(nanned, np.eye(4)), folder / "masked.nii.gz")
    entry = {"name": "n", "format": "nifti", "images": "in/fmri.nii.gz", "modality": "mri"}
    first = build(write_manifest(tmp_path, entry), tmp_path / "first")
    assert first["rows"]["total"] == 4
    assert shard_rows(tmp_path / "first")[0]["pixel_spacing"] == [0.800000011920929, 0.5]
    every = build(write_manifest(tmp_path, dict(entry, volume="all")), tmp_path / "every")
    assert every["rows"]["total"] == 12 and len({r["id"] for r in shard_rows(tmp_path / "every")}) == 12
    assert build(write_manifest(tmp_path, dict(entry, volume="mean")), tmp_path / "mean")["rows"]["total"] == 4
    entry = dict(entry, images="in/masked.nii.gz")
    refused = run_build_expecting_reject(tmp_path, entry)
    assert "NaN" in refused
    zeroed = build(write_manifest(tmp_path, dict(entry, nan="zero")), tmp_path / "zero")
    assert zeroed["rows"]["total"] == 4 and zeroed["notes"]["nan_voxels_zeroed"] == 4


def run_build_expecting_reject(tmp_path: Path, entry: dict) -> str:
    from conftest import run_cli

    out = tmp_path / "refused"
    result = run_cli("build", write_manifest(tmp_path, entry), "--out", out, "--quiet", ok=False)
    assert result.exit_code != 0  # its only input was refused: a build of nothing
    (line,) = rejects(out)
    return str(line["reason"])
