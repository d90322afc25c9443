"""MedPix 2.0 through `format: medpix`: rows, references, splits, curation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MEDPIX, build, need, rejects, write_manifest
from datasets import get_dataset_config_names, load_dataset

TEST = MEDPIX / "test"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def medpix_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = TEST
    need(root)
    folder = tmp_path_factory.mktemp("medpix")
    out = folder / "medpix-test"
    return out, build(write_manifest(folder, {"name": "medpix", "format": "medpix", "root": str(root)}), out,
                      "--workers", "2")


def test_ct_and_mri_rows_plus_rejects_account_for_every_image(medpix_build: tuple[Path, dict]) -> None:
    out, summary = medpix_build
    descriptions = _jsonl(TEST / "descriptions_test.jsonl")
    assert get_dataset_config_names(str(out)) == ["all", "ct", "mri"]
    rejected = {Path(line["file"]).stem for line in rejects(out)}
    for modality, kind in (("ct", "CT"), ("mri", "MR")):
        ds = load_dataset(str(out), modality, split="test")  # MedPix's split name is kept
        expected = {d["image"] for d in descriptions if d["Type"] == kind} - rejected
        assert {Path(f).stem for f in ds["source_file"]} == expected
    assert summary["files"]["seen"] == len(descriptions) == 200
    assert summary["files"]["accepted"] + summary["files"]["rejected"] == 200


NOT_ORGANS = {"Generalized", "Multisystem", "Pathology", "Pediatrics", "Vascular", "Hematopoietic", "Endocrine",
              "Obstetrics", "Nerve, peripheral"}


def test_fields_match_the_source_json(medpix_build: tuple[Path, dict]) -> None:
    out, _ = medpix_build
    descriptions = {d["image"]: d for d in _jsonl(TEST / "descriptions_test.jsonl")}
    cases = {c["U_id"]: c for c in _jsonl(TEST / "data_test.jsonl")}
    ds = load_dataset(str(out), "all", split="test")
    for row in ds.select(range(0, len(ds), 17)):
        source = descriptions[Path(row["source_file"]).stem]
        case = cases[source["U_id"]]
        assert row["modality"] == {"CT": "ct", "MR": "mri"}[source["Type"]]
        assert row["case_id"] == source["U_id"]
        # a MedPix location that names a specialty or a system spread over the body is never stated as an organ
        assert (row["organ"] == "unspecified") == (source["Location"] in NOT_ORGANS), source["Location"]
        assert row["organ"] != source["Location"] or row["organ"] == "unspecified"
        assert row["location"] == source["Location Category"]
        assert row["disease"] == case["Case"]["Case Diagnosis"]
        assert row["details"]["modality_detail"] == source["Description"]["Modality"]
        assert row["details"]["plane"] == source["Description"]["Plane"]
        assert row["details"]["age"] == source["Description"]["Age"]
        assert row["details"]["sex"] == source["Description"]["Sex"]
        assert row["reference"]["caption"] == source["Description"]["Caption"]
        assert row["reference"]["findings"] == case["Case"]["Findings"]
        assert row["reference"]["history"] == case["Case"]["History"]
        assert row["rois"] == [] and row["mask"] is None
        assert row["image"].size == (row["width"], row["height"])


def _copy_split(root: Path) -> Path:
    """A writable copy of the test split, to edit as a curator would."""
    shutil.copytree(TEST, root)
    return root


def test_curation_rules_flag_noise_and_a_curation_file_overrides_them(tmp_path: Path) -> None:
    need(TEST)
    root = _copy_split(tmp_path / "medpix")
    descriptions = _jsonl(root / "descriptions_test.jsonl")
    descriptions[0]["Location"] = "Bethesda, MD"
    descriptions[1]["Description"]["Caption"] = "N/A"
    descriptions[2]["Type"] = "MR"  # its Modality still says CT
    twin = dict(descriptions[3], image="MPX9999_synpic00001")
    shutil.copy(root / "images" / f"{descriptions[3]['image']}.png", root / "images" / "MPX9999_synpic00001.png")
    (root / "images" / f"{descriptions[4]['image']}.png").unlink()
    descriptions.append(twin)
    (root / "descriptions_test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in descriptions))
    entry = {"name": "medpix", "format": "medpix", "root": "medpix"}
    out = tmp_path / "first"
    summary = build(write_manifest(tmp_path, entry), out)
    lines = {line["rule"]: line for line in rejects(out)}
    assert set(lines) == {"location_unknown", "caption_missing", "type_mismatch", "duplicate_pixels",
                          "image_unreadable"}
    assert "Bethesda" in lines["location_unknown"]["reason"]
    kept_twin = next(r["id"] for r in load_dataset(str(out), "all", split="test")
                     if r["source_file"].endswith(f"{descriptions[3]['image']}.png"))
    assert lines["duplicate_pixels"]["reason"] == f"same pixels as {kept_twin}"
    assert summary["files"] == {"seen": 201, "accepted": 196, "rejected": 5, "skipped": 0}

    keep = lines["location_unknown"]["id"]
    drop = next(r["id"] for r in load_dataset(str(out), "all", split="test").select([10]))
    (tmp_path / "curation.yaml").write_text(
        f"- {{id: {keep}, action: keep, note: Bethesda is where the case was read}}\n"
        f"- {{id: {drop}, action: drop, note: poor image}}\n")
    second = tmp_path / "second"
    summary = build(write_manifest(tmp_path, {**entry, "curation": "curation.yaml"}), second)
    ids = set(load_dataset(str(second), "all", split="test")["id"])
    first_ids = set(load_dataset(str(out), "all", split="test")["id"])
    assert ids == (first_ids | {keep}) - {drop}
    assert {line["rule"] for line in rejects(second)} == {"caption_missing", "type_mismatch", "duplicate_pixels",
                                                          "image_unreadable", "curation"}


def test_the_consolidated_json_files_read_like_the_split_files(tmp_path: Path) -> None:
    need(TEST)
    root = tmp_path / "MedPix-2-0"
    shutil.copytree(TEST / "images", root / "images")
    (root / "Case_topic.json").write_text(json.dumps(_jsonl(TEST / "data_test.jsonl")))
    (root / "Descriptions.json").write_text(json.dumps(_jsonl(TEST / "descriptions_test.jsonl")))
    out = tmp_path / "consolidated"
    summary = build(write_manifest(tmp_path, {"name": "medpix", "format": "medpix", "root": "MedPix-2-0"}), out)
    assert summary["rows"]["by_split"] == {"train": 200}  # one split: the manifest's
    row = load_dataset(str(out), "all", split="train")[0]
    assert row["reference"]["findings"] and row["disease"]


def test_no_category_is_stated_as_an_organ_and_no_text_repeats_itself(medpix_build: tuple[Path, dict]) -> None:
    import re

    out, _ = medpix_build
    for row in load_dataset(str(out), "all", split="test"):
        texts = [row["caption"], row["coarse_caption"], *(row["attributes"] or {}).values()]
        for text in filter(None, texts):
            assert not re.search(r"(?<!\.)\.\s*\.(?!\.)|[,;:]\s*[,;:]", text), text  # no "..", ", ,", ";,"
            assert not re.search(r"\b(\w+)\s+\1\b", text, re.I), text  # no word twice in a row
            assert not re.search(r"\b([A-Z][\w ]+), \1\b", text), text  # no item twice in a row
            for category in NOT_ORGANS:
                assert f"Organ or region: {category}" not in text and f"of the {category}" not in text
