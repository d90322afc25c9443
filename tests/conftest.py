"""Shared fixtures: reference data under ../shared, builds through the real CLI."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# One folder of the test run's own, removed when it ends (nothing is left in the system's temporary folder):
_RUN = tempfile.mkdtemp(prefix="medtri-tests-")
atexit.register(shutil.rmtree, _RUN, ignore_errors=True)
# The id key of the tests' builds: a folder of their own, never the user's configuration.
os.environ.setdefault("MEDTRI_CONFIG_DIR", os.path.join(_RUN, "config"))
# caption indexes of release snapshots: a folder of the tests' own
os.environ.setdefault("MEDTRI_CACHE_DIR", os.path.join(_RUN, "cache"))
# datasets keys its cache on the card's info, not on the files: no test may see an earlier session's rows.
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_RUN, "datasets"))

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

    path = get_testdata_file(name, download=False)  # the installed data only: never the network
    if path is None:
        pytest.skip(f"{name} is not in the installed pydicom-data")
    return Path(path)


def testdata_dicoms(skip: tuple[str, ...] = ()) -> list[Path]:
    """Every file of pydicom's own test data and of pydicom-data, found on disk (pydicom's
    ``get_testdata_files`` tries to download missing ones first: 15 s offline)."""
    pytest.importorskip("data_store", reason="pydicom-data is not installed (pip install pydicom-data)")
    from pydicom.data import data_manager

    roots = [Path(data_manager.DATA_ROOT) / "test_files"]
    roots += [Path(store.data_path) for store in data_manager.external_data_sources().values()]
    return sorted({p for root in roots for p in root.glob("*") if p.is_file() and not p.name.endswith(skip)})


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
    """A build through the CLI; a bug of the pipeline raises here instead of hiding among the rejects."""
    run_cli("build", manifest, "--out", out, "--workers", "1", "--quiet", "--on-error", "raise", *extra)
    return json.loads((out / "build.json").read_text())


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rejects(out: Path) -> list[dict[str, Any]]:
    """The local rejects log, with the real input paths (what the person who ran the build reads)."""
    return _jsonl(out / ".private" / "rejects.jsonl")


def published_rejects(out: Path) -> list[dict[str, Any]]:
    """``rejects.jsonl`` as published: public names or pseudonymous file ids."""
    return _jsonl(out / "rejects.jsonl")


def shard_rows(out: Path, config: str = "all", columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows straight from the Parquet shards (no datasets cache in between)."""
    import pyarrow.parquet as pq

    pattern = "*" if config == "all" else config
    return [row for path in sorted((out / "data").glob(f"{pattern}/*.parquet"))
            for row in pq.read_table(path, columns=columns).to_pylist()]


def real_files(out: Path) -> dict[str, str]:
    """Row id -> the input file it came from, from the local provenance map."""
    return {row_id: line["file"] for line in _jsonl(out / ".private" / "provenance.jsonl") for row_id in line["ids"]}


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo build, once per test session (both formats)."""
    out = tmp_path_factory.mktemp("demo") / "medtrinity-25m"
    run_cli("demo", "--out", out, "--workers", "2", "--quiet", "--format", "both")
    return out
