"""Shared fixtures: reference data under ../shared, builds through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
COLIN = SHARED / "colin27-aal"
MEDPIX = SHARED / "medpix-2.0"


def need(path: Path) -> Path:
    """Skip the test, with the reason, when reference data is absent."""
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared/data beside the repository)")
    return path


def dicom_file(name: str) -> Path:
    """A real DICOM file of pydicom-data; skip when the package is absent."""
    pytest.importorskip("data_store", reason="pydicom-data is not installed (pip install pydicom-data)")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in the installed pydicom-data")
    return Path(path)


def write_manifest(folder: Path, *sources: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": list(sources)}, sort_keys=False))
    return path


def run_cli(*args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok and result.exit_code != 0:
        raise AssertionError(f"medtri-build {' '.join(map(str, args))} failed:\n{result.output}")
    return result


def build(manifest: Path, out: Path, *extra: str) -> dict[str, Any]:
    run_cli("build", manifest, "--out", out, "--workers", "1", "--quiet", *extra)
    return json.loads((out / "build.json").read_text())


def rejects(out: Path) -> list[dict[str, Any]]:
    text = (out / "rejects.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo build, once per test session (both formats)."""
    out = tmp_path_factory.mktemp("demo") / "medtrinity-25m"
    run_cli("demo", "--out", out, "--workers", "2", "--quiet", "--format", "both")
    return out
