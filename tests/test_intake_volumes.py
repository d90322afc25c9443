"""``format: volume``: NIfTI, NRRD and MetaImage as they are published, structure folders, pairing by suffixes.

Real files of ``../shared/data/intake-dev`` (see its README for the numbers quoted here); the expected boxes are
the README's (0-based, max inclusive: the rows' pixel-edge boxes are one more at the max) or computed in the test
with nibabel and numpy.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED, build, need, rejects, shard_rows, write_manifest
from PIL import Image

INTAKE = SHARED / "intake-dev"
COLIN = INTAKE.parent / "colin27-aal"



def edges(box: list[int]) -> list[float]:
    """A README box (max inclusive) as the rows' pixel-edge box."""
    x0, y0, x1, y1 = box
    return [float(x0), float(y0), float(x1 + 1), float(y1 + 1)]


def by_slice(rows: list[dict[str, Any]]) -> dict[int, dict[str, list[float]]]:
    return {r["slice_index"]: {roi["label"]: roi["bbox"] for roi in r["rois"]} for r in rows}


def test_a_structure_folder_gives_one_roi_per_non_empty_structure(tmp_path: Path) -> None:
    folder = need(INTAKE / "totalseg-mr-structures")
    summary = build(write_manifest(tmp_path, {
        "name": "totalseg", "format": "volume", "modality": "mri", "images": f"{folder}/*/mri.nii.gz",
        "structures": "segmentations/*.nii.gz"}), tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    slices = by_slice(rows)
    assert len(rows) == 20 == summary["rows"]["total"] and not rejects(tmp_path / "out")
    # independent: every non-empty mask, reoriented to RAS+ by nibabel, sliced as displayed
    names = set()
    for path in sorted((folder / "s0001" / "segmentations").glob("*.nii.gz")):
        mask = np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj) != 0
        if mask.any():
            names.add(path.name.removesuffix(".nii.gz"))
        for k in range(mask.shape[2]):
            shown = mask[::-1, ::-1, k].T
            if shown.any():
                ys, xs = np.nonzero(shown)
                assert slices[k][path.name.removesuffix(".nii.gz")] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert len(names) == 23 == len({label for rois in slices.values() for label in rois})
    assert slices[10]["liver"] == edges([10, 23, 40, 68]) and slices[10]["spleen"] == edges([86, 60, 97, 71])
    assert slices[10]["aorta"] == edges([56, 48, 62, 54])
    assert [k for k, rois in slices.items() if "lung_right" in rois] == [19]


def test_nrrd_pairs_by_image_and_label_suffixes_and_reports_a_label_without_its_image(tmp_path: Path) -> None:
    folder = need(INTAKE / "nrrd" / "pyradiomics" / "data")
    build(write_manifest(tmp_path, {
        "name": "radiomics", "format": "volume", "modality": "mri", "images": f"{folder}/*.nrrd",
        "masks": f"{folder}/*_label.nrrd", "labels": {1: "tumour"}, "slicing": {"only_with_roi": True}}),
          tmp_path / "out")
    slices = by_slice(shard_rows(tmp_path / "out"))
    assert sorted(slices) == [8, 9, 10] and slices[9] == {"tumour": edges([209, 86, 222, 100])}
    (line,) = rejects(tmp_path / "out")
    assert line["file"].endswith("lung1_label.nrrd") and "pairs with no image" in line["reason"]


@pytest.mark.parametrize(("folder", "masks"), [("nrrd/colin27", "*-label.nhdr"), ("metaimage", "*_label.mhd")])
def test_nrrd_and_metaimage_read_as_the_nifti_they_were_made_from(folder: str, masks: str, tmp_path: Path) -> None:
    root = need(INTAKE / folder)
    summary = build(write_manifest(tmp_path, {
        "name": "colin", "format": "volume", "modality": "mri", "images": f"{root}/*", "masks": f"{root}/{masks}",
        "labels_file": str(need(COLIN / "aal.nii.txt")), "slicing": {"only_with_roi": True}}), tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    slices = by_slice(rows)
    assert len(rows) == 146 and sorted(slices)[0] == 10 and sorted(slices)[-1] == 155
    assert slices[90]["Precentral_L"] == edges([128, 85, 149, 92])
    assert slices[90]["Precentral_R"] == edges([22, 75, 40, 90])
    assert len({label for rois in slices.values() for label in rois}) == 116
    # the detached voxel data (.raw.gz, .zraw) is counted, neither an image nor a reject
    assert summary["skipped"] == {"voxel data of a detached header": 1} and not rejects(tmp_path / "out")
    # the same pixels as the NIfTI the files were converted from, displayed as the README's conventions say
    t1 = np.asanyarray(nib.as_closest_canonical(nib.load(COLIN / "ch2.nii.gz")).dataobj)
    row = next(r for r in rows if r["slice_index"] == 90)
    stored = np.asarray(Image.open(BytesIO(row["image"]["bytes"])))
    reference = t1[::-1, ::-1, 90].T
    assert stored.shape == reference.shape
    assert np.corrcoef(stored.ravel().astype(float), reference.ravel().astype(float))[0, 1] > 0.99


def test_an_oblique_volume_without_its_mask_is_reported_or_kept_as_asked(tmp_path: Path) -> None:
    from conftest import run_cli

    flair = need(INTAKE / "nrrd" / "niivue" / "FLAIR.nrrd")
    radiomics = need(INTAKE / "nrrd" / "pyradiomics" / "data")
    source = {"name": "flair", "format": "volume", "modality": "mri", "images": str(flair),
              "masks": f"{radiomics}/*_label.nrrd"}
    refused = run_cli("build", write_manifest(tmp_path / "a", source), "--out", tmp_path / "refused", "--workers",
                      "1", "--quiet", ok=False)
    lines = {Path(line["file"]).name: line["reason"] for line in rejects(tmp_path / "refused")}
    assert refused.exit_code != 0 and "no mask pairs with it" in lines["FLAIR.nrrd"]
    assert "unmasked: keep" in lines["FLAIR.nrrd"] and lines["lung1_label.nrrd"] == "mask pairs with no image"
    summary = build(write_manifest(tmp_path / "b", {**source, "unmasked": "keep"}), tmp_path / "kept")
    assert summary["rows"]["total"] == 140  # axial slices of the nearest RAS+ axes: 124 x 160 x 140
    assert all(not r["rois"] for r in shard_rows(tmp_path / "kept"))


def test_an_oblique_nrrd_written_here_is_sliced_along_its_nearest_axes(tmp_path: Path) -> None:
    """A volume whose axes are swapped and flipped in its header: the slices follow the header, not the array."""
    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    voxels = rng.integers(0, 1000, size=(6, 7, 5)).astype(np.int16)  # (i, j, k) as stored
    image = sitk.GetImageFromArray(voxels.transpose(2, 1, 0))  # SimpleITK arrays are (k, j, i)
    # i runs along +y (L->... LPS y is posterior), j along -x, k along +z: direction columns in LPS
    image.SetDirection((0, -1, 0, 1, 0, 0, 0, 0, 1))
    image.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(image, str(tmp_path / "swapped.nrrd"))
    # independent: the LPS->RAS affine written out here, axes reordered and flipped with numpy only
    lps = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 2.0]])
    ras = np.diag([-1, -1, 1]) @ lps  # columns: where i, j, k point in RAS
    order = [int(np.argmax(np.abs(ras[axis]))) for axis in range(3)]  # which voxel axis runs along R, A, S
    reference = voxels.transpose(order)
    for axis in range(3):
        if ras[axis, order[axis]] < 0:
            reference = np.flip(reference, axis)
    summary = build(write_manifest(tmp_path, {"name": "o", "format": "volume", "modality": "mri",
                                              "images": "swapped.nrrd"}), tmp_path / "out")
    rows = sorted(shard_rows(tmp_path / "out"), key=lambda r: r["slice_index"])
    assert summary["rows"]["total"] == reference.shape[2] == len(rows)
    for k, row in enumerate(rows):  # the stored slice is the reference slice through a monotone window
        shown = reference[::-1, ::-1, k].T
        stored = np.asarray(Image.open(BytesIO(row["image"]["bytes"]))).astype(int)
        assert stored.shape == shown.shape
        order = np.argsort(shown, axis=None, kind="stable")
        assert (np.diff(stored.ravel()[order]) >= 0).all()
    assert rows[0]["pixel_spacing"] == [1.0, 1.0]


def test_appledouble_files_are_counted_never_images(tmp_path: Path) -> None:
    (tmp_path / "vol").mkdir()
    nib.save(nib.Nifti1Image(np.arange(4 * 4 * 2, dtype=np.int16).reshape(4, 4, 2), np.eye(4)),
             tmp_path / "vol" / "a.nii.gz")
    (tmp_path / "vol" / "._a.nii.gz").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (tmp_path / "vol" / "README.txt").write_text("notes")
    summary = build(write_manifest(tmp_path, {"name": "v", "format": "volume", "modality": "ct",
                                              "images": "vol/*"}), tmp_path / "out")
    assert summary["rows"]["total"] == 2 and not rejects(tmp_path / "out")
    assert summary["skipped"] == {"AppleDouble metadata (._*)": 1, "side file (not read by the format)": 1}
    assert summary["files"] == {"seen": 1, "accepted": 1, "rejected": 0, "skipped": 2}
    card = (tmp_path / "out" / "README.md").read_text()
    assert "2 files were passed over on purpose" in card


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz",
                                  "reoriented_anat_moved.nii"])
def test_the_volumes_nibabel_ships_give_nibabels_slices(name: str, tmp_path: Path) -> None:
    """nibabel's own test volumes (NIfTI-1, NIfTI-2, 4D, reoriented): every axial slice of the first volume, in the
    nearest RAS+ orientation nibabel gives (as_closest_canonical), through a monotone window."""
    path = Path(nib.__file__).parent / "tests" / "data" / name
    if not path.exists():
        pytest.skip(f"nibabel {nib.__version__} does not ship {name}")
    image = nib.as_closest_canonical(nib.load(path))
    data = np.asanyarray(image.dataobj)
    data = data[..., 0] if data.ndim == 4 else data
    summary = build(write_manifest(tmp_path, {"name": "v", "format": "volume", "modality": "mri",
                                              "images": str(path)}), tmp_path / "out")
    rows = {r["slice_index"]: r for r in shard_rows(tmp_path / "out")}
    blank = [k for k in range(data.shape[2]) if data[:, :, k].min() == data[:, :, k].max()]
    assert summary["rows"]["total"] + summary["rejects"]["other"] >= data.shape[2] - len(blank) > 0
    for k, row in rows.items():
        shown = data[::-1, ::-1, k].T.astype(float)
        stored = np.asarray(Image.open(BytesIO(row["image"]["bytes"]))).astype(int)
        assert stored.shape == shown.shape
        order = np.argsort(shown, axis=None, kind="stable")
        assert (np.diff(stored.ravel()[order]) >= 0).all(), k
