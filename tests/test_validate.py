"""Quality validation: rule and LLM judges against human references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MEDPIX, build, run_cli, write_manifest

from builder.dataset.validate import RulesJudge, row_total

REFERENCE = "Axial contrast-enhanced CT shows a hypodense mass in the right lobe of the liver."
AGREES = {
    "modality": "A CT image in the axial plane.",
    "organ_detection": "The liver is shown.",
    "roi_analysis": "A mass lies on the patient's right, area ratio 2.1%.",
    "texture": "The mass is hypodense relative to the liver parenchyma.",
    "region_relationship": "The mass lies within the liver.",
}
CONTRADICTS = {
    "modality": "An MRI image in the coronal plane.",
    "organ_detection": "The liver is shown.",
    "roi_analysis": "A mass lies on the patient's left, area ratio 2.1%.",
    "texture": "The mass is hyperintense relative to the liver.",
    "region_relationship": "The mass lies within the liver.",
}


def test_a_contradicting_description_scores_lower() -> None:
    judge = RulesJudge()
    good, bad = judge.score(AGREES, REFERENCE), judge.score(CONTRADICTS, REFERENCE)
    assert good["modality"] == 2 and bad["modality"] == 0
    assert good["roi_analysis"] == 2 and bad["roi_analysis"] == 0
    assert good["texture"] == 2 and bad["texture"] < 2  # "mass" agrees, "hyperintense" contradicts
    assert row_total(good) > row_total(bad)
    assert all(v is None or 0 <= v <= 2 for v in good.values()) and set(good) == set(AGREES)


def test_an_attribute_with_nothing_to_check_is_reported_apart_not_scored_as_one() -> None:
    judge = RulesJudge()
    reference = "Axial CT of the liver."  # no side, no texture, no relation to check against
    scores = judge.score(AGREES, reference)
    assert scores["modality"] == 2 and scores["organ_detection"] == 2
    assert scores["texture"] is None and scores["region_relationship"] is None
    # the score is over what could be checked: two attributes, both right, is 10 out of 10, not 8
    checked = [v for v in scores.values() if v is not None]
    assert row_total(scores) == 10 * sum(checked) / (2 * len(checked))


@pytest.fixture(scope="module")
def medpix_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = MEDPIX / "test"
    if not root.exists():
        pytest.skip(f"reference data {root} is absent (it lives in ../shared/data beside the repository)")
    folder = tmp_path_factory.mktemp("validate")
    out = folder / "medpix-validate"
    build(write_manifest(folder, {"name": "medpix", "format": "medpix", "root": str(root)}), out, "--workers", "2")
    return out


def test_validate_prints_per_modality_scores(medpix_out: Path) -> None:
    table = run_cli("validate", medpix_out).stdout
    assert "| ct | 100 |" in table and "| mri | 100 |" in table
    report = json.loads(run_cli("validate", medpix_out, "--json").stdout)
    assert report["judge"] == "rules" and report["scored"] == 200 and report["max_total"] == 10
    assert set(report["by_modality"]) == {"ct", "mri"}
    for values in report["by_modality"].values():
        assert 0 <= values["total"] <= 10
    assert len(report["worst"]) == 5 and report["worst"][0]["total"] <= report["worst"][-1]["total"]
    # the template describer's text states what was measured: it contradicts none of it
    assert report["contradictions"]["checked"] == 200 and report["contradictions"]["contradicted"] == 0
    # attributes that no reference could check are counted apart, with their share of the scored rows
    for key, value in report["unverifiable"].items():
        assert 0 <= value["count"] <= 200 and value["share"] == round(value["count"] / 200, 3), key
    assert "Not checkable" in table or not any(v["count"] for v in report["unverifiable"].values())


def test_the_llm_judge_speaks_the_chat_protocol(medpix_out: Path) -> None:
    from llm_server import ChatServer

    def answer(request: dict) -> str:
        assert "Reference:" in request["messages"][0]["content"]
        return '{"modality": 2, "organ_detection": 1, "roi_analysis": 1, "texture": 0, "region_relationship": 1}'

    with ChatServer(answer) as server:
        report = json.loads(run_cli("validate", medpix_out, "--judge", "openai", "--llm-base-url", server.url,
                                    "--llm-model", "judge", "--json").stdout)
    assert report["scored"] == 200 and report["total"] == 5
    assert report["attributes"] == {"modality": 2, "organ_detection": 1, "roi_analysis": 1, "texture": 0,
                                    "region_relationship": 1}
