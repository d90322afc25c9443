"""A MedPix-2-0 folder in its authors' published layout, assembled from ../shared/data/medpix-2.0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import MEDPIX, need

__all__ = ["lines", "medpix_folder"]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def medpix_folder(parent: Path) -> tuple[Path, dict[str, set[str]], dict[str, str]]:
    """A MedPix-2-0 folder: the test split as published, 40 train cases cut into train, dev and two halves.

    Returns the folder, the image stems of each split, and the half of each train image.
    """
    need(MEDPIX / "train-256")
    root = parent / "MedPix-2-0"
    (root / "images").mkdir(parents=True)
    split_dir = root / "splitted_dataset"
    split_dir.mkdir()
    cases = lines(MEDPIX / "train-256" / "data_train.jsonl")[:40]
    uids = {c["U_id"] for c in cases}
    descriptions = [d for d in lines(MEDPIX / "train-256" / "descriptions_train.jsonl") if d["U_id"] in uids]
    parts = {"train": cases[:30], "dev": cases[30:]}
    expected: dict[str, set[str]] = {}
    for name, members in parts.items():
        ids = {c["U_id"] for c in members}
        _write(split_dir / f"data_{name}.jsonl", members)
        _write(split_dir / f"descriptions_{name}.jsonl", [d for d in descriptions if d["U_id"] in ids])
        expected["validation" if name == "dev" else name] = {d["image"] for d in descriptions if d["U_id"] in ids}
    halves: dict[str, str] = {}
    for number, members in ((1, parts["train"][:15]), (2, parts["train"][15:])):
        ids = {c["U_id"] for c in members}
        _write(split_dir / f"data_train_{number}.jsonl", members)
        half = [d for d in descriptions if d["U_id"] in ids]
        _write(split_dir / f"descriptions_train_{number}.jsonl", half)
        halves.update({d["image"]: f"train_{number}" for d in half})
    for name in ("data_test.jsonl", "descriptions_test.jsonl"):
        shutil.copy(MEDPIX / "test" / name, split_dir / name)
    expected["test"] = {d["image"] for d in lines(MEDPIX / "test" / "descriptions_test.jsonl")}
    for folder in (MEDPIX / "test" / "images", MEDPIX / "train-256" / "images"):
        for stem in expected["test"] | expected["train"] | expected["validation"]:
            if (folder / f"{stem}.png").is_file():
                shutil.copy(folder / f"{stem}.png", root / "images" / f"{stem}.png")
    (split_dir / "uid_list.json").write_text(json.dumps({k: sorted({c["U_id"] for c in v}) for k, v in parts.items()}))
    return root, expected, halves
