"""The manifest fails before any work, naming the key; templates render as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli, write_manifest

from builder.errors import ManifestError
from builder.pipeline.sources.manifest import load_manifest
from builder.pipeline.template import Template

BASE = {"name": "src", "format": "image", "images": "img/*.png", "modality": "xray"}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"format": "jpeg2000"}, "format"),
        ({"modality": "radiograph"}, "modality"),
        ({"modality": None}, "modality"),
        ({"colour": "red"}, "colour"),
        ({"name": "bad name!"}, "name"),
        ({"images": "../../etc/*.png"}, "images"),
        ({"caption": "{modality_name} of {organn}"}, "caption"),
        ({"format": "nifti", "slicing": {"plane": "oblique"}}, "slicing.plane"),
        ({"format": "nifti", "slicing": {"step": 0}}, "slicing.step"),
        ({"slicing": {"step": 2}}, "slicing"),  # an image source has no slicing: its own options only
        ({"labels": {"one": "liver"}}, "labels"),
        ({"labels_file": "missing.txt"}, "labels_file"),
        ({"metadata": "nope.csv"}, "metadata"),
        ({"split": "train-a"}, "split"),
    ],
)
def test_an_invalid_manifest_names_the_key(tmp_path: Path, change: dict, key: str) -> None:
    entry = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ManifestError, match=f"sources\\[0\\]\\.{key}"):
        load_manifest(write_manifest(tmp_path, entry))


def test_the_cli_fails_before_any_work(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {**BASE, "images": "../../*.png"})
    result = run_cli("build", manifest, "--out", tmp_path / "out", ok=False)
    assert result.exit_code != 0
    assert "images" in result.output and "climbs out" in result.output
    assert not (tmp_path / "out").exists()


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("sources: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ManifestError, match="YAML"):
        load_manifest(path)


def test_metadata_columns_are_template_fields(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text("image,diagnosis\na,pneumonia\n")
    manifest = load_manifest(write_manifest(tmp_path, {**BASE, "metadata": "meta.csv", "disease": "{diagnosis}"}))
    assert manifest.sources[0].disease == "{diagnosis}"
    with pytest.raises(ManifestError, match=r"disease.*diagnosys"):
        load_manifest(write_manifest(tmp_path, {**BASE, "metadata": "meta.csv", "disease": "{diagnosys}"}))


def test_labels_file_reads_value_name_and_ignores_more_columns(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("# comment\n1 Precentral_L 2001\n2 Precentral_R 2002\n\n")
    spec = load_manifest(write_manifest(tmp_path, {**BASE, "labels_file": "labels.txt"})).sources[0]
    assert dict(spec.options.label_names) == {1: "Precentral_L", 2: "Precentral_R"}


def test_optional_clauses_drop_when_a_field_is_empty() -> None:
    rule = Template("{modality_name}[ of the {organ}][, {view}][; regions: {regions}]")
    assert rule.render({"modality_name": "MRI", "organ": "brain", "view": "axial slice 90",
                        "regions": "Precentral_L, Frontal_Sup_L"}) == \
        "MRI of the brain, axial slice 90; regions: Precentral_L, Frontal_Sup_L"
    assert rule.render({"modality_name": "CT", "organ": "", "view": None, "regions": ""}) == "CT"
