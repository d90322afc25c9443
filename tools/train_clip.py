"""Train a CLIP scan classifier on a built MedPix 2.0 dataset, on its authors' splits.

    python tools/train_clip.py --data BUILT [--data BUILT ...] --out MODEL_DIR [--model CLIP_DIR]
    python tools/train_clip.py --predict MODEL_DIR IMAGE_OR_BUILT_DIR...

As MedPix 2.0's authors did, an image is classified by the text prompt it matches
best ("a CT scan of the head", one per modality and location category), which
gives its modality (CT or MR) and its location category (Head, Thorax, Abdomen,
Spine and Muscles, Reproductive and Urinary System). Training minimises the
cross-entropy of each image against all prompts on the `train` split, the epoch
kept is the one that scores best on `validation` (the authors' `dev`), and the
report is on `test`: the splits of the given builds, one build holding all three
(a build of the published `MedPix-2-0/` folder) or several (one per split). A
build without a validation split lends one from train: `--dev-fraction` of its
cases, whole cases, picked by a hash of the case id. With `--model` a local CLIP
checkpoint is fine-tuned; without it the offline CLIP of `scan_clip.py` is
trained from scratch on a CPU in minutes. `MODEL_DIR/metrics.json` holds, for
dev and test, `modality_accuracy`, `location_accuracy`, `confusion`, and chance and
majority-class baselines.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import scan_clip

from medtrinity_25m import stream

MODALITIES = {"ct": "CT", "mri": "MR"}
LOCATIONS = ("Head", "Thorax", "Abdomen", "Spine and Muscles", "Reproductive and Urinary System")
CLASSES = [(m, loc) for m in MODALITIES for loc in LOCATIONS]
PROMPTS = [f"a {MODALITIES[m]} scan of the {loc.lower()}" for m, loc in CLASSES]
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    image: Image.Image
    label: int
    case: str


def splits_of(folder: Path) -> list[str]:
    return sorted({p.name.split("-")[0] for p in (folder / "data").rglob("*.parquet")})


def rows(folder: Path, split: str) -> Iterator[Example]:
    """Every CT/MR row of one split with a known location category, streamed."""
    for row in stream(str(folder), "all", split=split, columns=("image", "modality", "location", "case_id")):
        if row["modality"] in MODALITIES and row["location"] in LOCATIONS:
            yield Example(Image.fromarray(row["image"]), CLASSES.index((row["modality"], row["location"])),
                          row["case_id"] or "")


def held_out(case: str, fraction: float) -> bool:
    return int.from_bytes(hashlib.sha256(case.encode()).digest()[:4], "big") < fraction * 2**32


def load_splits(folders: list[Path], dev_fraction: float) -> tuple[dict[str, list[Example]], str]:
    """train, validation and test examples of the builds, and where the validation examples came from."""
    parts: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for folder in folders:
        for split in splits_of(folder):
            if split in parts:
                parts[split] += rows(folder, split)
    source = "the validation split (MedPix 2.0's dev)"
    if not parts["validation"]:
        train = parts["train"]
        parts["train"] = [e for e in train if not held_out(e.case, dev_fraction)]
        parts["validation"] = [e for e in train if held_out(e.case, dev_fraction)]
        source = f"{dev_fraction:.0%} of the training cases, held out (no validation split was given)"
    missing = [name for name, examples in parts.items() if not examples]
    if missing:
        raise SystemExit(f"train_clip: no CT/MR rows with a location category in split(s) {', '.join(missing)}")
    return parts, source


def augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, small rotations, zooms and shifts, and a contrast change, per image."""
    n = len(pixels)
    uniform = lambda low, high, *shape: torch.rand(n, *shape, generator=generator) * (high - low) + low  # noqa: E731
    flipped = torch.where((torch.rand(n, generator=generator) < 0.5)[:, None, None, None], pixels.flip(-1), pixels)
    scale, angle = uniform(0.85, 1.15), uniform(-0.2, 0.2)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * torch.cos(angle), -scale * torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = scale * torch.sin(angle), scale * torch.cos(angle)
    theta[:, :, 2] = uniform(-0.1, 0.1, 2)
    grid = torch.nn.functional.affine_grid(theta, list(pixels.shape), align_corners=False)
    moved = torch.nn.functional.grid_sample(flipped, grid, align_corners=False)
    return moved * uniform(0.8, 1.2, 1, 1, 1)


def prepare(model: scan_clip.ScanModel, examples: list[Example]) -> torch.Tensor:
    return torch.cat([model.prepare([e.image for e in examples[i:i + 256]]) for i in range(0, len(examples), 256)])


@torch.no_grad()
def predict(model: scan_clip.ScanModel, pixels: torch.Tensor) -> list[int]:
    model.module.eval()
    return [int(i) for start in range(0, len(pixels), 128)
            for i in model.logits(pixels[start:start + 128], PROMPTS).argmax(-1)]


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    hf_logging.set_verbosity_error()
    generator = torch.Generator().manual_seed(0)
    model = scan_clip.new_model(args.out, args.model, args.image_size)
    parts, dev_source = load_splits(args.data, args.dev_fraction)
    pixels = {name: prepare(model, examples) for name, examples in parts.items()}
    labels = {name: torch.tensor([e.label for e in examples]) for name, examples in parts.items()}
    print(", ".join(f"{len(v)} {k} rows" for k, v in parts.items()) + f"; dev: {dev_source}", flush=True)
    lr = args.lr or (1e-5 if args.model else 2e-3)
    optimizer = torch.optim.AdamW(model.module.parameters(), lr=lr, weight_decay=0.05)
    steps = args.epochs * -(-len(pixels["train"]) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    train_labels = [e.label for e in parts["train"]]
    best: tuple[float, int, dict[str, Any]] = (-1.0, 0, {})
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.module.train()
        order = torch.randperm(len(pixels["train"]), generator=generator)
        for batch in order.split(args.batch_size):
            loss = torch.nn.functional.cross_entropy(model.logits(augment(pixels["train"][batch], generator), PROMPTS),
                                                     labels["train"][batch], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        dev = evaluate(predict(model, pixels["validation"]), parts["validation"], train_labels)
        score = (dev["modality_accuracy"] + dev["location_accuracy"]) / 2
        print(f"epoch {epoch}/{args.epochs}: loss {float(loss.detach()):.3f}, "
              f"dev modality {dev['modality_accuracy']:.3f} "
              f"location {dev['location_accuracy']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(model.module.state_dict()))
    model.module.load_state_dict(best[2])
    metrics = {
        "model": f"fine-tuned from {args.model}" if args.model else "offline CLIP (scan_clip.ConvClip) from scratch",
        "epochs": args.epochs, "chosen_epoch": best[1], "chosen_by": "mean of dev modality and location accuracy",
        "train_rows": len(parts["train"]), "dev_source": dev_source,
        "dev": evaluate(predict(model, pixels["validation"]), parts["validation"], train_labels),
        "test": evaluate(predict(model, pixels["test"]), parts["test"], train_labels),
        "train_seconds": round(time.perf_counter() - start, 1)}
    model.save(args.out)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: {m: v[m] for m in ("modality_accuracy", "location_accuracy", "majority_class")}
                      if k in ("dev", "test") else v for k, v in metrics.items()}, indent=2))


def evaluate(guesses: list[int], examples: list[Example], train_labels: list[int]) -> dict[str, Any]:
    truth = [e.label for e in examples]
    modality: Callable[[int], str] = lambda i: CLASSES[i][0]  # noqa: E731
    location: Callable[[int], str] = lambda i: CLASSES[i][1]  # noqa: E731

    def accuracy(part: Callable[[int], str], guess: list[str]) -> float:
        return round(float(np.mean([part(t) == g for t, g in zip(truth, guess)])), 4)

    def confusion(part: Callable[[int], str], names: list[str]) -> dict[str, Any]:
        table = [[0] * len(names) for _ in names]
        for t, g in zip(truth, guesses):
            table[names.index(part(t))][names.index(part(g))] += 1
        return {"labels": names, "rows_true_columns_predicted": table}

    majority = {name: Counter(part(y) for y in train_labels).most_common(1)[0][0]
                for name, part in (("modality", modality), ("location", location))}
    return {
        "evaluated": len(examples),
        "modality_accuracy": accuracy(modality, [modality(g) for g in guesses]),
        "location_accuracy": accuracy(location, [location(g) for g in guesses]),
        "chance": {"modality": 1 / len(MODALITIES), "location": 1 / len(LOCATIONS)},
        "majority_class": {"modality": accuracy(modality, [majority["modality"]] * len(examples)),
                           "location": accuracy(location, [majority["location"]] * len(examples))},
        "confusion": {"modality": confusion(modality, list(MODALITIES)),
                      "location": confusion(location, list(LOCATIONS))},
    }


def predict_main(model_dir: Path, targets: list[Path]) -> None:
    hf_logging.set_verbosity_error()
    model = scan_clip.load(model_dir)
    named: list[tuple[str, Image.Image]] = []
    for target in targets:
        if (target / "data").is_dir():
            named += [(f"{target}:{split}:{i}", e.image) for split in splits_of(target)
                      for i, e in enumerate(rows(target, split))]
        else:
            named.append((str(target), Image.open(target)))
    guesses = predict(model, model.prepare([image for _, image in named]))
    for (name, _), guess in zip(named, guesses):
        modality, location = CLASSES[guess]
        print(json.dumps({"input": name, "modality": modality, "location": location}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", help="a built MedPix dataset (repeatable)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model", type=Path, help="a local CLIP checkpoint to fine-tune")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, help="peak learning rate (default 2e-3, 1e-5 with --model)")
    parser.add_argument("--image-size", type=int, default=96, help="input size of the offline CLIP")
    parser.add_argument("--dev-fraction", type=float, default=0.1,
                        help="share of training cases held out as dev when the builds have no validation split")
    parser.add_argument("--predict", type=Path, nargs="+", metavar="MODEL_DIR INPUT",
                        help="classify images or built folders with a trained model")
    args = parser.parse_args()
    if args.predict:
        if len(args.predict) < 2:
            parser.error("--predict takes MODEL_DIR then images or built folders")
        return predict_main(args.predict[0], args.predict[1:])
    if not (args.data and args.out):
        parser.error("training needs --data and --out")
    train(args)


if __name__ == "__main__":
    main()
