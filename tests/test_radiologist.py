"""Template text a radiologist would sign, on Colin27 (a T1 MRI) with the AAL atlas: grey-matter parcels are never
brighter than the brain on T1, positions are given within the head in the patient's terms and follow the anatomy,
lists stay unambiguous. References are the atlas's own names and the pixels, read here with nibabel and numpy."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from conftest import COLIN, build, need, shard_rows, write_manifest
from PIL import Image

CORTICAL = re.compile(r"^(Frontal|Temporal|Occipital|Parietal|Precentral|Postcentral|Rolandic|Supp_Motor|Olfactory|"
                      r"Rectus|Insula|Cingulum|Calcarine|Cuneus|Lingual|Fusiform|SupraMarginal|Angular|Precuneus|"
                      r"Paracentral|Heschl|ParaHippocampal)")


def _colin(tmp_path_factory: pytest.TempPathFactory, name: str, **extra: object) -> list[dict]:
    need(COLIN)
    folder = tmp_path_factory.mktemp(name)
    source = {"name": "colin", "format": "volume", "images": str(COLIN / "ch2.nii.gz"),
              "masks": str(COLIN / "aal.nii.gz"), "labels_file": str(COLIN / "aal.nii.txt"), "modality": "mri",
              "organ": "brain", "slicing": {"plane": "axial", "step": 8}, **extra}
    build(write_manifest(folder, source), folder / "out")
    return [row for row in shard_rows(folder / "out", "mri") if row["rois"]]


@pytest.fixture(scope="module")
def t1_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _colin(tmp_path_factory, "colin-t1", sequence="T1")


@pytest.fixture(scope="module")
def unknown_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _colin(tmp_path_factory, "colin-unknown")


def _sentences(row: dict, key: str) -> list[str]:
    return re.split(r"(?<=\.) (?=[A-Z])", row["attributes"][key] or "")


def _label_of(row: dict, sentence: str) -> dict | None:
    from builder.anatomy import plain_label

    named = [roi for roi in row["rois"] if sentence.lower().startswith(plain_label(roi["label"]).lower() + " ")]
    return max(named, key=lambda roi: len(roi["label"])) if named else None


def test_no_cortical_region_is_called_brighter_than_the_brain_on_t1(t1_rows: list[dict],
                                                                    unknown_rows: list[dict]) -> None:
    stated = 0
    for rows in (t1_rows, unknown_rows):
        for row in rows:
            for sentence in _sentences(row, "texture"):
                roi = _label_of(row, sentence)
                if roi and CORTICAL.match(roi["label"]):
                    assert "hyperintense" not in sentence and "brighter" not in sentence, sentence
    for row in t1_rows:  # on T1 the measured, radiologically right statements are made
        image = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))).astype(np.float64) / 255
        mask = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"])))
        for sentence in _sentences(row, "texture"):
            match = re.search(r"is (hypo|iso)intense relative to the rest of the brain \(mean ([\d.]+) vs", sentence)
            roi = _label_of(row, sentence)
            if match and roi:
                inside = image[mask == row["rois"].index(roi) + 1]
                assert float(match.group(2)) == pytest.approx(inside.mean(), abs=0.006), sentence
                stated += 1
    assert stated > 50
    # of unknown sequence, no contrast of normal anatomy is stated at all: the sequence decides it
    assert not any("intense relative" in (row["attributes"]["texture"] or "") for row in unknown_rows)


def test_positions_are_in_the_head_in_the_patients_terms_and_follow_the_anatomy(t1_rows: list[dict]) -> None:
    checked = 0
    for row in t1_rows:
        for sentence in _sentences(row, "roi_analysis"):
            roi = _label_of(row, sentence)
            if roi is None:
                continue
            where = re.search(r"lies in the (anterior|central|posterior) part of the head(, on the patient's "
                              r"(left|right))?,", sentence)
            assert where, sentence
            side = roi["label"].rsplit("_", 1)[-1]
            if where.group(3):  # AAL's _L regions are on the patient's left, never stated on the right
                assert where.group(3)[0].upper() == side or side not in "LR", sentence
            if roi["label"].startswith(("Frontal", "Rectus", "Olfactory")):
                assert where.group(1) != "posterior", sentence
            if roi["label"].startswith(("Occipital", "Calcarine", "Cuneus")):
                assert where.group(1) != "anterior", sentence
            # the stored cell says the same as the text
            row_cell = {"anterior": "upper", "central": "center", "posterior": "lower"}[where.group(1)]
            col_cell = {"right": "left", "left": "right", None: "center"}[where.group(3)]
            stored = "center" if row_cell == col_cell == "center" else f"{row_cell}-{col_cell}"
            assert roi["position"] == stored, (sentence, roi["position"])
            checked += 1
    assert checked > 60
    top = max((row for row in t1_rows if len(row["rois"]) >= 4), key=lambda row: row["slice_index"])
    assert len({roi["position"] for roi in top["rois"]}) > 1, top["slice_index"]  # not all "center" near the vertex


def test_lists_of_names_holding_commas_are_unambiguous(t1_rows: list[dict]) -> None:
    seen = 0
    for row in t1_rows:
        listed = re.search(r"Annotated structures: (.*?)(?:;? and \d+ more regions?)?\.(?: |$)",
                           row["attributes"]["organ_detection"])
        assert listed, row["attributes"]["organ_detection"]
        if re.search(r", (crus|lobules?) ", listed.group(1)):  # a name holding a comma: the list is of "; "
            seen += 1
            # each item of a semicolon list is one name: a side, then words, optionally ", crus/lobule(s) ..."
            for item in listed.group(1).split("; "):
                assert re.fullmatch(r"(left |right )?[a-zA-Z' ]+(, (crus I+|lobules? \w+( and \w+)?|"
                                    r"[a-z ]+ part))?", item.strip().rstrip(";")), item
    assert seen >= 3


@pytest.mark.parametrize(("modality", "sequence", "name", "stated"), [
    ("mri", "T1", "left precentral gyrus", {"hypo", "iso"}),  # grey matter is darker than white matter on T1
    ("mri", "T2", "left precentral gyrus", {"hyper", "iso"}),  # and brighter on T2
    ("mri", "FLAIR", "left lateral ventricle", {"hypo"}),  # CSF is suppressed on FLAIR
    ("mri", "T1", "right cerebral white matter", {"hyper", "iso"}),
    ("mri", None, "left hippocampus", set()),  # normal anatomy of unknown sequence: nothing
    ("ct", None, "subcutaneous fat", {"hypo"}),
    ("ct", None, "vertebrae L1", {"hyper"}),
    ("ct", None, "liver lesion", None),  # a finding: as measured
])
def test_contrast_rules_follow_radiology(modality: str, sequence: str | None, name: str,
                                         stated: set[str] | None) -> None:
    from builder.pipeline.text.radiology import allowed

    assert allowed(modality, sequence, name) == stated


def test_the_liver_is_compared_with_the_spleen_on_ct() -> None:
    from builder.pipeline.data import DescribeRequest, Roi, RoiStats
    from builder.pipeline.text.describers import TemplateDescriber

    rois = [Roi((10, 10, 60, 60), "liver", 0.2, "center-left", pixels=2000),
            Roi((70, 10, 90, 40), "spleen", 0.05, "upper-right", pixels=500)]
    for liver, spleen, word in ((0.40, 0.52, "hypodense"), (0.55, 0.47, "hyperdense"), (0.50, 0.49, "isodense")):
        stats = [RoiStats(liver, 0.3, 0.1), RoiStats(spleen, 0.3, 0.1)]
        request = DescribeRequest("x", "ct", "abdomen", "", "axial", 3, "CT of the abdomen", rois, stats, "axial")
        texture = TemplateDescriber().describe(request)["texture"]
        assert f"Liver is {word} relative to the spleen (mean {liver:.2f} vs {spleen:.2f})." in texture
