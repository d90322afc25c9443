"""Extensions with options of their own, added from outside the package: an engine, a describer, an exporter and a
source format, each with one option, registered from this module and run through the command line with their flags.
Nothing under builder/cli knows them."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pytest
from conftest import run_cli, shard_rows, write_manifest
from PIL import Image

from builder.dataset.export import EXPORTERS, Exporter
from builder.dataset.shards import iter_rows
from builder.options import option
from builder.pipeline.data import DescribeRequest, Record, Unit, UnitResult
from builder.pipeline.engines import ENGINES, EngineEntry
from builder.pipeline.engines.base import main_describer
from builder.pipeline.process import TripletOptions, process_unit
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.base import FileSource
from builder.pipeline.sources.options import ImageOptions
from builder.pipeline.text.registry import DESCRIBERS, DescriberEntry
from builder.pipeline.values import integer
from medtrinity_25m import ATTRIBUTE_KEYS


@dataclasses.dataclass(frozen=True)
class InOrderOptions:
    """``--engine in-order``: units one after the other in this process, tagged."""

    tag: str = option("plain", flag="in-order-tag", help="A word build.json records of the engine.")

    def start(self, triplets: TripletOptions) -> InOrder:
        return InOrder(self, triplets)


class InOrder:
    def __init__(self, options: InOrderOptions, triplets: TripletOptions) -> None:
        self.options, self.triplets = options, triplets

    def map(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        return (process_unit(unit, self.triplets) for unit in units)

    def describer(self, text: Any) -> Any:
        return main_describer(text)

    def describer_concurrency(self, text: Any) -> int:
        return 1

    def info(self) -> dict[str, Any]:
        return {"engine": "in-order", "tag": self.options.tag}

    def close(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class EchoOptions:
    word: str = option("echo", flag="echo-word", resume=True, help="The word every attribute says.")


@dataclasses.dataclass(frozen=True)
class EchoDescriber:
    word: str
    name: str = "echo"

    def info(self) -> dict[str, object]:
        return {"name": self.name, "word": self.word}

    def describe(self, request: DescribeRequest) -> dict[str, str]:
        return {key: f"{self.word} {key}" for key in ATTRIBUTE_KEYS}


@dataclasses.dataclass(frozen=True)
class IdsOptions:
    suffix: str = option(".txt", flag="ids-suffix", help="The file's suffix.")


def export_ids(out: Path, dest: Path, config: str | None, options: IdsOptions) -> int:
    ids = [row["id"] for _, row in iter_rows(out, config=config)]
    (dest / f"ids{options.suffix}").write_text("\n".join(ids) + "\n")
    return len(ids)


@dataclasses.dataclass(frozen=True)
class NpyOptions(ImageOptions):
    """``format: npy``: 2D arrays saved with numpy, multiplied by ``scale``."""

    scale: int = option(1, flag="npy-scale", parse=lambda v, r, k: integer(1)(v, k),
                        help="Multiply the arrays of every npy source by this.")


class NpySource(FileSource):
    options = NpyOptions

    def records(self, unit: Unit) -> Iterator[Record]:
        pixels = np.load(unit.image).astype(np.uint16) * unit.spec.options.scale
        yield Record(unit=unit, pixels=pixels.astype(np.uint8), labelmap=None, modality=unit.spec.modality or "")


@pytest.fixture
def registered() -> Iterator[None]:
    ENGINES.register("in-order", EngineEntry(InOrderOptions, "in this process, in order"))
    DESCRIBERS.register("echo", DescriberEntry("worker", lambda text: EchoDescriber(text.describer_options.word),
                                               "says one word", EchoOptions))
    EXPORTERS.register("ids", Exporter(export_ids, IdsOptions, "ids"))
    ADAPTERS.register("npy", NpySource())
    try:
        yield
    finally:
        ENGINES.unregister("in-order")
        DESCRIBERS.unregister("echo")
        EXPORTERS.unregister("ids")
        ADAPTERS.unregister("npy")


def test_extensions_from_outside_run_through_the_command_line_with_their_flags(registered: None,
                                                                               tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    arrays = [np.arange(100, dtype=np.uint8).reshape(10, 10) + i for i in range(3)]
    for i, array in enumerate(arrays):
        np.save(tmp_path / "in" / f"{i}.npy", array)
    manifest = write_manifest(tmp_path, {"name": "toy", "format": "npy", "images": "in/*.npy",
                                         "modality": "microscopy"})
    shown = run_cli("build", "--help").output
    assert all(f in shown for f in ("--in-order-tag", "--echo-word", "--npy-scale"))
    out = tmp_path / "out"
    run_cli("build", manifest, "--out", out, "--quiet", "--on-error", "raise", "--engine", "in-order",
            "--in-order-tag", "tagged", "--describer", "echo", "--echo-word", "hello", "--npy-scale", "2")
    summary = json.loads((out / "build.json").read_text())
    assert summary["engine"] == {"engine": "in-order", "tag": "tagged"}
    assert summary["options"]["engine_options.tag"] == "tagged"
    assert summary["options"]["triplets.text.describer_options.word"] == "hello"
    assert summary["options"]["source_flags"] == {"scale": 2}
    rows = shard_rows(out, "microscopy")
    assert len(rows) == 3 and all(r["attributes"]["modality"] == "hello modality" for r in rows)
    stored = sorted(np.asarray(Image.open(io.BytesIO(r["image"]["bytes"]))).min() for r in rows)
    assert stored == [0, 2, 4]  # every array doubled by --npy-scale 2
    result = run_cli("export", "ids", out, "--out", tmp_path / "ids", "--ids-suffix", ".list")
    assert "exported 3 ids as ids" in result.output
    assert sorted((tmp_path / "ids" / "ids.list").read_text().split()) == sorted(r["id"] for r in rows)
    refused = run_cli("export", "ids", out, "--out", tmp_path / "ids", "--vqa", ok=False)
    assert refused.exit_code == 2 and "--vqa is an option of format llava" in refused.output
