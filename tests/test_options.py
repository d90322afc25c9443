"""Every option is declared once: build.json, the resume key and the command line are made from the fields.

The reference walk over the fields is the test's own (dataclass fields and their type hints), not the code's.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from conftest import build, run_cli, write_manifest
from PIL import Image

from builder.dataset.export import EXPORTERS
from builder.formats import FORMATS
from builder.pipeline.build import BuildError, BuildOptions
from builder.pipeline.build import build as run_build
from builder.pipeline.engines import ENGINES
from builder.pipeline.engines.local import LocalOptions
from builder.pipeline.proposers import PROPOSERS
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.manifest import load_manifest
from builder.pipeline.text.registry import DESCRIBERS
from builder.pngcodec import ENCODERS


def settings(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """(dotted name, field) of every setting of ``cls``: fields with a help, nested option classes walked."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from settings(hints[f.name], f"{prefix}{f.name}.")
        elif "help" in f.metadata:
            yield f"{prefix}{f.name}", f


def flag(f: dataclasses.Field[Any]) -> str | None:
    given = f.metadata.get("flag")
    return None if given is False else "--" + (given or f.name.replace("_", "-"))


def images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((12, 14), 10 + i * 20, np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    images(tmp_path / "img", 4)
    return write_manifest(tmp_path, {"name": "opt", "format": "image", "images": "img/*.png", "modality": "xray"})


def test_build_json_records_every_leaf_of_the_build_options_and_no_secret(manifest: Path, tmp_path: Path) -> None:
    summary = build(manifest, tmp_path / "out", "--id-key", "a-secret-nobody-may-read-0123456789abcdef")
    expected = {name for name, f in settings(BuildOptions) if not f.metadata.get("registry")}
    expected |= {"engine_options." + name for name, _ in settings(LocalOptions)}  # the engine chosen: local
    assert set(summary["options"]) >= expected
    assert summary["options"]["engine"] == "local" and summary["options"]["triplets.text.describer"] == "template"
    assert summary["options"]["limits.max_rows"] == 10_000 and summary["options"]["triplets.max_memory"] == 4.0
    text = (tmp_path / "out" / "build.json").read_text()
    assert "a-secret-nobody-may-read" not in text and summary["options"]["id_key"] is True


def _other(name: str, value: Any) -> Any:
    """A different value of the same kind for the setting ``name``."""
    if name == "triplets.png_encoder":
        return next(n for n, e in ENCODERS.items() if e.available() and n != value)
    alternatives: dict[str, Any] = {"formats": ["webdataset"], "triplets.text.describer": "openai",
                                    "triplets.text.style": "medtrinity", "source_flags": {"allow_burned_in": True},
                                    "triplets.text.kb": "another-kb", "triplets.text.on_contradiction": "reject"}
    if name in alternatives:
        return alternatives[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    raise AssertionError(f"no other value known for {name} = {value!r}")


def _replace(options: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    if rest:
        return dataclasses.replace(options, **{head: _replace(getattr(options, head), rest, value)})
    current = getattr(options, head)
    return dataclasses.replace(options, **{head: tuple(value) if isinstance(current, tuple) else value})


class Stop(Exception):
    pass


def test_a_resume_under_any_changed_resume_setting_is_refused_naming_it(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = BuildOptions(out=out, shard_units=1, engine_options=LocalOptions(workers=1))
    spec = load_manifest(manifest)

    def stop_after_two(progress: Any) -> None:
        if progress.units_done == 2:
            raise Stop()

    with pytest.raises(Stop):
        run_build(spec, options, stop_after_two)
    names = [name for name, f in settings(BuildOptions) if f.metadata.get("resume")]
    assert {"formats", "shard_units", "limits.max_rows", "triplets.dedup", "triplets.text.style"} <= set(names)
    resolved = dataclasses.replace(options, triplets=options.triplets.resolved())  # as the build records it
    for name in names:
        changed = _replace(options, name, _other(name, _get(resolved, name)))
        with pytest.raises(BuildError, match=rf"other settings \({re.escape(name)}\)"):
            run_build(spec, changed)
    summary = run_build(spec, dataclasses.replace(options, engine_options=LocalOptions(workers=2)))
    assert summary["rows"]["total"] == 4  # the engine and its workers may change


def _get(options: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        options = getattr(options, part)
    return options


REGISTRIES = {"engines": ENGINES, "describers": DESCRIBERS, "exporters": EXPORTERS, "sources": ADAPTERS,
              "formats": FORMATS, "proposers": PROPOSERS}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_registry_entry_carries_its_options_class(kind: str) -> None:
    for name, entry in REGISTRIES[kind].items():
        assert isinstance(entry.options, type) and dataclasses.is_dataclass(entry.options), (kind, name)


def test_the_command_line_lists_the_flags_of_every_entry() -> None:
    shown = run_cli("build", "--help").output
    wanted = [flag(f) for _, f in settings(BuildOptions) if not f.metadata.get("registry")]
    for registry in (ENGINES, DESCRIBERS):
        wanted += [flag(f) for entry in registry.values() for _, f in settings(entry.options)]
    wanted += [flag(f) for entry in ADAPTERS.values() for _, f in settings(entry.options) if f.metadata.get("flag")]
    assert "--allow-burned-in" in wanted and "--ray-address" in wanted and "--llm-model" in wanted
    missing = [w for w in wanted if w is not None and w not in shown]
    assert not missing
    shown = run_cli("export", "--help").output
    missing = [w for entry in EXPORTERS.values() for _, f in settings(entry.options)
               if (w := flag(f)) is not None and w not in shown]
    assert not missing and "--vqa" in shown


def test_a_flag_of_an_entry_not_chosen_is_refused_naming_its_entry(manifest: Path, tmp_path: Path) -> None:
    result = run_cli("build", manifest, "--out", tmp_path / "out", "--ray-address", "10.0.0.1:6379", ok=False)
    assert result.exit_code == 2 and "--ray-address is an option of engine ray" in result.output
    result = run_cli("build", manifest, "--out", tmp_path / "out", "--vlm-model", "x", ok=False)
    assert result.exit_code == 2 and "describer transformers" in result.output
    assert not (tmp_path / "out").exists()


def test_the_resume_key_is_every_setting_marked_for_it(manifest: Path, tmp_path: Path) -> None:
    options = BuildOptions(out=tmp_path / "o")
    key = options.fingerprint(load_manifest(manifest))
    marked = {name for name, f in settings(BuildOptions) if f.metadata.get("resume")}
    assert set(key) == marked | {"manifest"}
    assert "engine_options.workers" not in key and "overwrite" not in key
    assert json.dumps(key)  # plain data, as the journal stores it


def test_closed_choices_are_types_that_match_their_values() -> None:
    from builder.errors import Stage, StageName
    from builder.pipeline.process import OnError
    from builder.pipeline.text.registry import Where

    assert set(typing.get_args(StageName)) == {stage.value for stage in Stage}
    assert set(typing.get_args(OnError)) == {"reject", "raise"}
    assert {entry.where for entry in DESCRIBERS.values()} <= set(typing.get_args(Where))
    shown = run_cli("build", "--help").output
    assert "[reject|raise]" in shown and "[attributes|medtrinity]" in shown
