"""Recipes: each public dataset's layout as data, run on real files (``../shared/data/intake-dev``) or on a replica the
test writes from the dataset's documented layout. Expected values come from the README of intake-dev or from what
the test wrote."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from conftest import SHARED, build, need, rejects, run_cli, shard_rows, write_manifest
from PIL import Image

from builder.pipeline.sources.recipes import RECIPES

INTAKE = SHARED / "intake-dev"



def recipe(tmp_path: Path, name: str, root: Path, **keys: object) -> dict:
    return build(write_manifest(tmp_path, {"name": name.replace("-", "_"), "recipe": name, "root": str(root),
                                           **keys}), tmp_path / "out")


def test_the_command_lists_every_recipe_and_shows_its_layout() -> None:
    listed = run_cli("recipes").output
    assert all(name in listed for name in RECIPES.names())
    assert {"totalsegmentator", "chexpert", "mimic-cxr-jpg", "nih-chestxray14", "rsna-pneumonia", "vindr-cxr",
            "luna16", "isic", "kvasir-seg", "busi"} <= set(RECIPES.names())
    shown = run_cli("recipes", "luna16").output
    assert "annotations.csv" in shown and "world_mm" in shown and "{root}/subset*/*.mhd" in shown
    assert run_cli("recipes", "nope", ok=False).exit_code == 2


def test_an_unknown_recipe_or_a_missing_root_is_a_manifest_error(tmp_path: Path) -> None:
    result = run_cli("build", write_manifest(tmp_path, {"name": "x", "recipe": "chexpurt", "root": "."}), "--out",
                     tmp_path / "out", ok=False)
    assert result.exit_code == 1 and "'chexpurt' is not one of" in result.output
    result = run_cli("build", write_manifest(tmp_path, {"name": "x", "recipe": "chexpert", "root": "absent"}),
                     "--out", tmp_path / "out", ok=False)
    assert "folder not found" in result.output and not (tmp_path / "out").exists()


def test_totalsegmentator_mr_on_its_published_layout(tmp_path: Path) -> None:
    summary = recipe(tmp_path, "totalsegmentator-mr", need(INTAKE / "totalseg-mr-structures"))
    rows = shard_rows(tmp_path / "out")
    assert summary["rows"]["total"] == 20 and {r["case_id"] for r in rows} == {"s0001"}
    assert len({roi["label"] for r in rows for roi in r["rois"]}) == 23 and not rejects(tmp_path / "out")


def test_chexpert_nih_rsna_and_luna16_on_their_published_layouts(tmp_path: Path) -> None:
    chexpert = recipe(tmp_path / "c", "chexpert", need(INTAKE / "chexpert" / "CheXpert-v1.0-small"))
    assert chexpert["rows"]["total"] == 9
    nih = recipe(tmp_path / "n", "nih-chestxray14", need(INTAKE / "nih-chestxray14"))
    assert nih["rows"]["total"] == 3 and nih["rois"] == {"annotation": 2}
    rsna = recipe(tmp_path / "r", "rsna-pneumonia", need(INTAKE / "rsna-pneumonia"))
    assert rsna["rows"]["total"] == 5 and rsna["rois"] == {"annotation": 5}
    luna = recipe(tmp_path / "l", "luna16", need(INTAKE / "luna16"))
    assert luna["rows"]["total"] == 14 and luna["rois"] == {"annotation": 14}


def test_the_entrys_own_keys_override_the_recipe(tmp_path: Path) -> None:
    summary = recipe(tmp_path, "luna16", need(INTAKE / "luna16"), organ="chest", slicing={"only_with_roi": False})
    assert summary["rows"]["total"] == 112  # every slice now, the recipe's only_with_roi replaced
    assert {r["organ"] for r in shard_rows(tmp_path / "out")} == {"chest"}


def _png(path: Path, array: np.ndarray, kind: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, kind)


def test_totalsegmentator_ct_replica(tmp_path: Path) -> None:
    root = tmp_path / "TotalSegmentator"
    ct = np.arange(10 * 8 * 4, dtype=np.int16).reshape(10, 8, 4)
    liver = np.zeros((10, 8, 4), np.uint8)
    liver[2:5, 1:3, 2] = 1
    (root / "s0007" / "segmentations").mkdir(parents=True)
    nib.save(nib.Nifti1Image(ct, np.eye(4)), root / "s0007" / "ct.nii.gz")
    nib.save(nib.Nifti1Image(liver, np.eye(4)), root / "s0007" / "segmentations" / "liver.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros_like(liver), np.eye(4)), root / "s0007" / "segmentations" / "spleen.nii.gz")
    (root / "meta.csv").write_text("\ufeffimage_id;age;gender;split\ns0007;61;m;train\n", encoding="utf-8")
    summary = recipe(tmp_path, "totalsegmentator", root)
    (row,) = shard_rows(tmp_path / "out")
    # RAS+ identity: slice 2 displayed as liver[::-1, ::-1, 2].T (10 wide, 8 high)
    assert row["slice_index"] == 2 and [(r["label"], r["bbox"]) for r in row["rois"]] == \
        [("liver", [5.0, 5.0, 8.0, 7.0])]
    assert row["case_id"] == "s0007" and summary["rows"]["total"] == 1


def test_mimic_cxr_jpg_replica_joins_findings_by_study_folder(tmp_path: Path) -> None:
    root = tmp_path / "mimic-cxr-jpg"
    _png(root / "files" / "p10" / "p10000032" / "s50414267" / "02aa804e.jpg", np.full((16, 16), 90, np.uint8),
         "JPEG")
    _png(root / "files" / "p10" / "p10000032" / "s53189527" / "2a2277a9.jpg", np.full((16, 16), 50, np.uint8),
         "JPEG")
    (root / "mimic-cxr-2.0.0-chexpert.csv").write_text(
        "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
        "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices\n"
        "10000032,50414267,,,,,,,,,1.0,,,,,\n"
        "10000032,53189527,1.0,-1.0,,,,,,,,0.0,,,,\n")
    recipe(tmp_path, "mimic-cxr-jpg", root)
    diseases = sorted(r["disease"] for r in shard_rows(tmp_path / "out"))
    assert diseases == ["Atelectasis; uncertain: Cardiomegaly", "no finding"]


def test_vindr_cxr_replica_keeps_every_readers_box_and_negatives(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    root = tmp_path / "vindr"
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    for name in ("a1b2", "c3d4"):
        (root / "train" / f"{name}.dicom").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    (root / "annotations" / "annotations_train.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
        "a1b2,R8,Nodule/Mass,2,3,9,10\na1b2,R9,Nodule/Mass,2.5,3,9.5,11\nc3d4,R8,No finding,,,,\n")
    summary = recipe(tmp_path, "vindr-cxr", root, modality="xray")
    boxes = sorted(tuple(r["bbox"]) for row in shard_rows(tmp_path / "out") for r in row["rois"])
    assert boxes == [(2.0, 3.0, 9.0, 10.0), (2.5, 3.0, 9.5, 11.0)] and summary["rows"]["total"] == 2


def test_isic_kvasir_and_busi_replicas(tmp_path: Path) -> None:
    lesion = np.zeros((12, 14), np.uint8)
    lesion[3:7, 4:10] = 255
    isic = tmp_path / "isic"
    _png(isic / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000001.jpg", np.full((12, 14, 3), 120, np.uint8), "JPEG")
    _png(isic / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000001_segmentation.png", lesion)
    recipe(tmp_path / "i", "isic", isic)
    (row,) = shard_rows(tmp_path / "i" / "out")
    assert [(r["label"], r["bbox"]) for r in row["rois"]] == [("skin lesion", [4.0, 3.0, 10.0, 7.0])]

    kvasir = tmp_path / "kvasir"
    _png(kvasir / "images" / "cju0qkwl35piu0993l0dewei2.jpg", np.full((12, 14, 3), 80, np.uint8), "JPEG")
    _png(kvasir / "masks" / "cju0qkwl35piu0993l0dewei2.jpg", np.stack([lesion] * 3, axis=2), "JPEG")
    recipe(tmp_path / "k", "kvasir-seg", kvasir)
    (row,) = shard_rows(tmp_path / "k" / "out")
    (roi,) = row["rois"]
    assert roi["label"] == "polyp" and np.allclose(roi["bbox"], [4, 3, 10, 7], atol=1)  # a JPEG mask's edges

    busi = tmp_path / "Dataset_BUSI_with_GT"
    _png(busi / "benign" / "benign (1).png", np.full((12, 14), 70, np.uint8))
    _png(busi / "benign" / "benign (1)_mask.png", lesion)
    _png(busi / "benign" / "benign (1)_mask_1.png", lesion)
    _png(busi / "normal" / "normal (1).png", np.full((12, 14), 60, np.uint8))
    _png(busi / "normal" / "normal (1)_mask.png", np.zeros((12, 14), np.uint8))
    summary = recipe(tmp_path / "b", "busi", busi)
    rows = {r["disease"]: r for r in shard_rows(tmp_path / "b" / "out")}
    assert set(rows) == {"benign", "normal"} and not rows["normal"]["rois"]
    assert [r["bbox"] for r in rows["benign"]["rois"]] == [[4.0, 3.0, 10.0, 7.0]]
    (line,) = rejects(tmp_path / "b" / "out")
    assert "second mask" in line["reason"] and summary["rows"]["total"] == 2
    assert "benign (1)" not in json.dumps(json.loads((tmp_path / "b" / "out" / "rejects.jsonl").read_text()))
