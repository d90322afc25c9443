"""Model text checked against what was measured: a local OpenAI-compatible server answers from the prompt, and on
a known share of rows plants one contradiction (wrong modality, side, organ, count, an invented size). Every one is
found, no clean answer is flagged, ``retry`` asks again once naming it, and build.json counts what the server saw.

Real CT images (MedPix 2.0's test split), each with a mask drawn here: a nodule on the image's left third and a
cyst on its right third, so each has a side of the patient; PNG files have no pixel spacing, so any length in the
text is invented.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import MEDPIX, build, need, published_rejects, run_cli, shard_rows, write_manifest
from llm_server import ChatServer, prompt_text
from PIL import Image

from builder.checks import check, facts_of

PLANTS = [None, "modality", None, "side", None, "organ", None, "count", None, "size"]
RULE = {"modality": "modality", "side": "side", "organ": "organ", "count": "count", "size": "size"}


def _scans(folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    stems = []
    images = sorted((need(MEDPIX / "test") / "images").glob("*.png"))
    for index, path in enumerate(images[:len(PLANTS)]):
        stem = f"scan_{index}"
        shutil.copy(path, folder / f"{stem}.png")
        with Image.open(path) as image:
            width, height = image.size
        yy, xx = np.mgrid[:height, :width]
        mask = np.zeros((height, width), np.uint8)
        radius = min(width, height) // 16
        mask[(xx - width * 0.2) ** 2 + (yy - height * 0.5) ** 2 < radius ** 2] = 1  # the image's left
        mask[(xx - width * 0.8) ** 2 + (yy - height * 0.5) ** 2 < radius ** 2] = 2  # the image's right
        Image.fromarray(mask).save(folder / f"{stem}_mask.png")
        stems.append(stem)
    return stems


def _manifest(tmp_path: Path) -> Path:
    _scans(tmp_path / "scans")
    return write_manifest(tmp_path, {
        "name": "scans", "format": "image", "images": "scans/scan_*[0-9].png", "masks": "scans/*_mask.png",
        "labels": {1: "nodule", 2: "cyst"}, "modality": "ct", "organ": "abdomen",
        "caption": "{modality_name} image {stem} of the {organ}[; regions: {regions}]"})


class Model:
    """Answers as a careful model would, from what the prompt says; plants its row's contradiction on the first
    try (and on every try with ``stubborn``). ``log``: (stem, try, planted) per request."""

    def __init__(self, stubborn: bool = False) -> None:
        self.stubborn = stubborn
        self.log: list[tuple[str, int, str | None]] = []

    def __call__(self, request: dict) -> str:
        prompt = prompt_text(request)
        stem = re.search(r"image (scan_\d+)", prompt).group(1)
        retry = "Your previous answer contradicted" in prompt
        plant = PLANTS[int(stem.split("_")[1])] if (not retry or self.stubborn) else None
        self.log.append((stem, 2 if retry else 1, plant))
        rois = re.findall(r"ROI \d+: ([^,]+), (.+?), area ratio ([\d.]+)%", prompt)
        sentences = [f"The {name} lies in the {where}, area ratio {area}%." for name, where, area in rois]
        answer = {"modality": "A CT image of the abdomen.", "organ_detection": "The abdomen is shown.",
                  "roi_analysis": " ".join(sentences), "texture": "The nodule is homogeneous.",
                  "region_relationship": f"{['no', 'one', 'two', 'three'][len(rois)]} regions of interest are "
                                         "annotated."}
        if plant == "modality":
            answer["modality"] = "An MRI image of the abdomen."
        elif plant == "side":  # the nodule put on the patient's other side
            answer["roi_analysis"] = answer["roi_analysis"].replace("patient's right", "patient's LEFT").replace(
                "patient's left", "patient's right").replace("LEFT", "left")
        elif plant == "organ":  # MedTrinity #27: the organ of another study
            answer["modality"] = "A CT image of the brain."
            answer["organ_detection"] = "The brain and the ventricles are shown."
        elif plant == "count":
            answer["region_relationship"] = "Four regions of interest are annotated."
        elif plant == "size":
            answer["texture"] = "The nodule is homogeneous and measures 2.3 cm."
        return json.dumps(answer)


def _llm(server: ChatServer, *extra: str) -> tuple[str, ...]:
    return ("--describer", "openai", "--llm-base-url", server.url, "--llm-model", "vlm", "--no-answer-cache",
            *extra)


def _rows(out: Path) -> dict[str, dict]:
    from conftest import real_files

    files = real_files(out)
    return {Path(files[r["id"]]).stem: r for r in shard_rows(out)}


def test_every_planted_contradiction_is_found_and_retried_once_naming_it(tmp_path: Path) -> None:
    out, model = tmp_path / "out", Model()
    with ChatServer(model) as server:
        summary = build(_manifest(tmp_path), out, *_llm(server))
    planted = {f"scan_{i}": kind for i, kind in enumerate(PLANTS)}
    firsts = {stem for stem, attempt, _ in model.log if attempt == 1}
    retries = [stem for stem, attempt, _ in model.log if attempt == 2]
    assert firsts == set(planted)
    assert sorted(retries) == sorted(s for s, kind in planted.items() if kind)  # each contradicted row, once
    for request in server.requests:  # the retry's prompt names what the first answer contradicted
        prompt = prompt_text(request)
        if "Your previous answer contradicted" in prompt:
            stem = re.search(r"image (scan_\d+)", prompt).group(1)
            assert f"- {RULE[planted[stem]]}:" in prompt, prompt[-400:]
    rows = _rows(out)
    for stem, kind in planted.items():
        checks = rows[stem]["checks"]
        assert checks["action"] == ("retried" if kind else None), (stem, checks)
        assert checks["contradictions"] == []  # the stored (second) answer is clean: nothing flagged falsely
        assert {"modality", "organ", "side", "count"} <= set(checks["checked"])
    stage = summary["model_stage"]
    assert stage["usage"]["requests"] == len(server.requests) == len(model.log) == 15
    counted = stage["checks"]
    assert counted["checked"] == 10 and counted["contradicted"] == 5 and counted["retried"] == 5
    assert counted["flagged"] == counted["rejected"] == counted["contradicted_after_retry"] == 0
    assert counted["by_rule"] == {rule: 1 for rule in ("count", "modality", "organ", "side", "size")}
    assert "5 contradicted it" in (out / "README.md").read_text()


def test_what_the_first_answer_contradicted_is_named_rule_by_rule(tmp_path: Path) -> None:
    """The checker alone, on the server's first answers: each plant found under its own rule, nothing else."""
    out = tmp_path / "out"
    build(_manifest(tmp_path), out)  # template text: the facts
    model = Model()
    rows = _rows(out)
    for stem, row in rows.items():
        prompt_rois = "\n".join(f"ROI {i}: {r['label']}, {_where(row, r)}, area ratio {100 * r['area_ratio']:.1f}%, "
                                for i, r in enumerate(row["rois"], 1))
        request = {"messages": [{"role": "user", "content": [
            {"type": "text", "text": f"Coarse caption: CT image {stem} of the abdomen\n{prompt_rois}"}]}]}
        found = check(json.loads(model(request)), facts_of(row))
        kind = PLANTS[int(stem.split("_")[1])]
        assert set(found.rules) == ({RULE[kind]} if kind else set()), (stem, found.contradictions)
        # and the template's own text, the facts in words, contradicts nothing
        assert check(row["attributes"], facts_of(row)).contradictions == ()


def _where(row: dict, roi: dict) -> str:
    """How the prompt words a stored position, written out here: the CT has no plane, so rows read upper/lower,
    and the image's left is the patient's right."""
    cell = roi["position"]
    vertical, column = ("center", "center") if cell == "center" else cell.split("-")
    text = f"{ {'upper': 'upper', 'center': 'central', 'lower': 'lower'}[vertical]} part of the abdomen"
    return text + {"left": ", on the patient's right", "right": ", on the patient's left", "center": ""}[column]


@pytest.mark.parametrize(("policy", "action", "requests"), [("flag", "flagged", 10), ("keep", "kept", 10),
                                                             ("reject", "rejected", 15)])
def test_the_policy_decides_what_a_contradicted_answer_becomes(tmp_path: Path, policy: str, action: str,
                                                               requests: int) -> None:
    out, model = tmp_path / "out", Model(stubborn=True)
    with ChatServer(model) as server:
        summary = build(_manifest(tmp_path), out, *_llm(server, "--on-contradiction", policy))
    assert len(server.requests) == requests  # flag and keep never ask again; reject asks once more
    counted = summary["model_stage"]["checks"]
    assert counted["contradicted"] == 5 and counted[action] == 5
    rows = _rows(out)
    planted = {f"scan_{i}" for i, kind in enumerate(PLANTS) if kind}
    if policy == "reject":
        assert set(rows) == {f"scan_{i}" for i in range(10)} - planted
        lines = [line for line in published_rejects(out) if line["stage"] == "text"]
        assert len(lines) == 5 and all("contradicts what was measured" in line["reason"] for line in lines)
    else:
        assert {s for s, r in rows.items() if r["checks"]["action"] == action} == planted
        assert all(rows[s]["checks"]["contradictions"] for s in planted)


def test_imported_batch_results_are_checked_too(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(_manifest(tmp_path), out)
    llm = ("--describer", "openai", "--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "big-vlm")
    requests = tmp_path / "requests.jsonl"
    run_cli("describe", str(out), "--export-batch", str(requests), *llm)
    model = Model()
    results = tmp_path / "results.jsonl"
    with open(results, "w") as fh:
        for line in map(json.loads, requests.read_text().splitlines()):
            content = model(line["body"])
            fh.write(json.dumps({"custom_id": line["custom_id"], "error": None, "response": {
                "status_code": 200, "body": {"choices": [{"message": {"role": "assistant", "content": content}}]}}})
                     + "\n")
    run_cli("describe", str(out), "--import-batch", str(results), *llm)
    rows = _rows(out)
    flagged = {s for s, r in rows.items() if r["checks"]["action"] == "flagged"}
    assert flagged == {f"scan_{i}" for i, kind in enumerate(PLANTS) if kind}  # no retry from a batch: flagged
    summary = json.loads((out / "build.json").read_text())
    assert summary["described_again"]["checks"]["flagged"] == 5
    card = (out / "README.md").read_text()
    assert "by the `openai` describer. Each model answer was checked" in card and "5 are flagged" in card
    run_cli("verify", str(out))


def test_validate_reports_the_contradiction_rate_beside_the_score(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ChatServer(Model(stubborn=True)) as server:
        build(_manifest(tmp_path), out, *_llm(server, "--on-contradiction", "keep"))
    report = json.loads(run_cli("validate", str(out), "--json").stdout)["contradictions"]
    assert (report["checked"], report["contradicted"], report["rate"]) == (10, 5, 0.5)
    assert report["by_rule"] == {rule: 1 for rule in ("count", "modality", "organ", "side", "size")}
    assert "Contradiction rate: 50.0% (5 of 10 described rows" in run_cli("validate", str(out)).stdout
