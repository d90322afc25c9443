"""What a user reads is true of the image: findings per slice, plain anatomy, one position frame, no filler."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import COLIN, build, need, shard_rows, write_manifest

from builder.anatomy import plain_label

FILLER = re.compile(r"\bno (region|annotated|local-global)|not specified|\bunspecified\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def colin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(COLIN)
    folder = tmp_path_factory.mktemp("colin-text")
    out = folder / "out"
    build(write_manifest(folder, {"name": "colin", "format": "nifti", "images": str(COLIN / "ch2.nii.gz"),
                                  "masks": str(COLIN / "aal.nii.gz"), "labels_file": str(COLIN / "aal.nii.txt"),
                                  "modality": "mri", "organ": "brain", "disease": "atlas parcellation",
                                  "slicing": {"plane": "axial", "step": 15}}), out)
    return out


def _raw_labels() -> set[str]:
    return {line.split()[1] for line in (COLIN / "aal.nii.txt").read_text().splitlines() if line.strip()}


def test_no_raw_atlas_label_reaches_the_prose(colin: Path) -> None:
    raw = _raw_labels()
    rows = shard_rows(colin, "mri")
    assert rows and any(r["rois"] for r in rows)
    for row in rows:
        words = set(re.findall(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+", row["caption"] + " " + row["coarse_caption"]))
        assert not words & raw, words & raw
        for roi in row["rois"][:3]:
            assert roi["label"] in raw  # the raw name stays in the ROI table
    assert plain_label("Frontal_Inf_Tri_L") == "left inferior frontal gyrus, triangular part"
    assert plain_label("Precentral_R") == "right precentral gyrus"


def test_the_roi_table_and_the_text_say_the_same_position(colin: Path) -> None:
    checked = 0
    for row in shard_rows(colin, "mri"):
        analysis = row["attributes"]["roi_analysis"] or ""
        for roi in sorted(row["rois"], key=lambda r: -r["area_ratio"])[:5]:
            name = plain_label(roi["label"])
            sentence = next(s for s in analysis.split(". ") if s.lower().startswith(name.lower()))
            row_cell, col_cell = ("center", "center") if roi["position"] == "center" else roi["position"].split("-")
            # an axial slice in the patient's terms: up is anterior, the image's left the patient's right
            vertical = {"upper": "anterior", "center": "central", "lower": "posterior"}[row_cell]
            side = {"left": ", on the patient's right", "center": "", "right": ", on the patient's left"}[col_cell]
            assert f"{vertical} part of the head{side}," in sentence, (roi["position"], sentence)
            checked += 1
    assert checked >= 30


def test_no_attribute_is_filler_and_slices_state_only_findings_they_show(colin: Path, demo_out: Path) -> None:
    for row in shard_rows(colin, "mri") + shard_rows(demo_out):
        for key, text in row["attributes"].items():
            assert text is None or not FILLER.search(text), (key, text)
    # atlas slices have no ROI that shows "atlas parcellation": none states it as the slice's finding
    for row in shard_rows(colin, "mri"):
        assert "records the finding" not in row["caption"]
        assert "from a study recorded with atlas parcellation" in row["caption"]
    phantom = [r for r in shard_rows(demo_out, "ct") if r["source"] == "synthetic-ct-phantom"]
    shows = [r for r in phantom if any(roi["label"] == "hypodense lesion" for roi in r["rois"])]
    assert shows and len(shows) < len(phantom)
    for row in phantom:
        stated = "records the finding as synthetic liver lesion" in row["caption"]
        assert stated == (row in shows)
        assert ("synthetic liver lesion" in row["coarse_caption"]) == (row in shows)


def test_the_demo_fundus_eye_matches_where_its_disc_is_drawn(demo_out: Path) -> None:
    rows = shard_rows(demo_out, "fundus")
    assert len(rows) == 4
    for row in rows:
        (disc,) = row["rois"]
        on_right = (disc["bbox"][0] + disc["bbox"][2]) / 2 > row["width"] / 2
        assert ("right" if on_right else "left") in row["coarse_caption"].split(" of the ")[1].split()[0]


def test_medtrinity_style_writes_one_paragraph_in_the_release_s_words(tmp_path: Path) -> None:
    need(COLIN)
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "colin", "format": "nifti", "images": str(COLIN / "ch2.nii.gz"),
                                    "masks": str(COLIN / "aal.nii.gz"), "labels_file": str(COLIN / "aal.nii.txt"),
                                    "modality": "mri", "organ": "brain",
                                    "slicing": {"plane": "axial", "step": 30, "only_with_roi": True}}),
          out, "--style", "medtrinity")
    rows = shard_rows(out, "mri")
    assert rows
    for row in rows:
        caption = row["caption"]
        assert "\n" not in caption and caption.startswith("The image is an MRI image prominently displaying the brain")
        assert row["coarse_caption"] == "A brain MRI image"
        assert set(row["attributes"]) >= {"modality", "roi_analysis"}  # the five attributes stay
        phrases = re.findall(r"The (\w+) horizontally and (\w+) vertically situated region of interest, covering "
                             r"(\d+\.\d)% of the area, is the ([^(]+) \(", caption)
        assert len(phrases) == len(row["rois"])  # every ROI, in the release's words
        for roi in row["rois"]:
            row_word, col = ("center", "center") if roi["position"] == "center" else roi["position"].split("-")
            expected = ({"left": "left", "center": "center", "right": "right"}[col],
                        {"upper": "top", "center": "middle", "lower": "bottom"}[row_word], plain_label(roi["label"]))
            found = [p for p in phrases if (p[0], p[1], p[3]) == expected]
            assert found and abs(float(found[0][2]) - 100 * roi["area_ratio"]) <= 0.051, (expected, phrases[:3])


def test_export_llava_draws_rois_and_an_llm_writes_vqa(demo_out: Path, tmp_path: Path) -> None:
    import io
    import json as jsonlib

    import numpy as np
    from conftest import run_cli
    from llm_server import ChatServer
    from PIL import Image

    def answer(request: dict) -> str:
        text = request["messages"][-1]["content"]
        if "fundus" in text:
            return "not json at all"
        return jsonlib.dumps({"pairs": [{"question": f"q{i}?", "answer": f"a{i}."} for i in range(2)]})

    dest = tmp_path / "llava"
    with ChatServer(answer) as server:
        run_cli("export", "llava", demo_out, "--out", dest, "--vqa", "llm", "--vqa-pairs", "2", "--draw-rois",
                "--llm-base-url", server.url, "--llm-model", "m")
    records = jsonlib.loads((dest / "llava_train.json").read_text())
    rows = {r["id"]: r for r in shard_rows(demo_out)}
    with_rois = [i for i, r in rows.items() if r["rois"]]
    qa = [r for r in records if "-qa" in r["id"]]
    rejected = [jsonlib.loads(line) for line in (dest / "vqa_rejects.jsonl").read_text().splitlines()]
    fundus = {i for i, r in rows.items() if r["modality"] == "fundus"}
    assert {line["id"] for line in rejected} == fundus and all(line["reason"] for line in rejected)
    assert len(qa) == 2 * (len(rows) - len(fundus))
    assert all(q["conversations"][0]["value"].startswith("<image>\n") for q in qa)
    drawn = np.asarray(Image.open(dest / "images" / f"{with_rois[0]}.png").convert("RGB"))
    stored = np.asarray(Image.open(io.BytesIO(rows[with_rois[0]]["image"]["bytes"])).convert("RGB"))
    x0, y0 = (int(v) for v in rows[with_rois[0]]["rois"][0]["bbox"][:2])
    assert tuple(drawn[y0, x0]) == (0, 255, 0) and tuple(stored[y0, x0]) != (0, 255, 0)


def test_medrag_chunks_are_read_as_published_and_never_rechunked(tmp_path: Path) -> None:
    import json as jsonlib

    from builder.pipeline.knowledge import chunk
    from builder.pipeline.knowledge.corpus import read_corpus

    long_content = "Glioblastoma is the most common primary brain tumour. " * 40  # far over 800 characters
    lines = [{"id": "pubmed23n0001_0", "title": "Glioblastoma", "content": long_content,
              "contents": "Glioblastoma. " + long_content},
             {"id": "statpearls_1", "title": "Liver", "content": "The liver is the largest gland.",
              "contents": "Liver. The liver is the largest gland."}]
    (tmp_path / "pubmed").mkdir()
    (tmp_path / "pubmed" / "chunk.jsonl").write_text("\n".join(jsonlib.dumps(x) for x in lines) + "\n")
    docs = list(read_corpus([tmp_path / "pubmed"]))
    snippets = [s for d in docs for s in chunk(d)]
    assert [(s.id, s.title, s.text) for s in snippets] == [(x["id"], x["title"], x["content"]) for x in lines]
