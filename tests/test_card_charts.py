"""A card people can look at: charts beside README.md that it references, and croissant.json with its
responsible-AI fields, validated and read by the mlcroissant package."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli, shard_rows
from PIL import Image


def test_the_cards_charts_exist_and_the_card_shows_them(demo_out: Path) -> None:
    card = (demo_out / "README.md").read_text()
    shown = re.findall(r"!\[[^\]]+\]\((card/[a-z]+\.png)\)", card)
    assert shown == ["card/rows.png", "card/rois.png", "card/examples.png"]
    published = json.loads((demo_out / "build.json").read_text())["published"]
    for chart in shown:
        with Image.open(demo_out / chart) as image:
            assert image.format == "PNG" and image.width >= 600 and image.height >= 200
        assert chart in published  # uploaded with the card
    # the contact sheet shows rows with pixels: as many tiles as it can hold, from the published rows
    with Image.open(demo_out / "card/examples.png") as sheet:
        assert sheet.width == 4 * 192
    run_cli("verify", demo_out)


def test_croissant_json_validates_and_reads_the_rows(demo_out: Path) -> None:
    mlcroissant = pytest.importorskip("mlcroissant", reason="the Croissant check needs mlcroissant (test extra)")
    document = json.loads((demo_out / "croissant.json").read_text())
    for field in ("rai:dataCollection", "rai:personalSensitiveInformation", "rai:dataLicenses",
                  "rai:dataAnnotationProtocol", "rai:dataLimitations"):
        assert document[field], field
    assert "PS3.15 Annex E" in document["rai:personalSensitiveInformation"]
    dataset = mlcroissant.Dataset(jsonld=str(demo_out / "croissant.json"))
    assert not dataset.metadata.issues.errors and not dataset.metadata.issues.warnings, \
        dataset.metadata.issues.report()
    records = list(dataset.records(record_set="rows"))
    rows = shard_rows(demo_out)
    assert len(records) == len(rows)
    assert {r["rows/id"].decode() for r in records} == {r["id"] for r in rows}
    with_pixels = [r for r in records if r["rows/image"] is not None]
    assert with_pixels and all(isinstance(r["rows/image"], Image.Image) for r in with_pixels)
