"""Train a CLIP-style scan classifier on built MedPix 2.0 shards, as MedPix 2.0's authors did.

    python tools/train_clip.py --train BUILT_TRAIN --eval BUILT_TEST --out MODEL_DIR [--model CLIP_DIR]
    python tools/train_clip.py --predict MODEL_DIR IMAGE_OR_BUILT_DIR...

Images and text prompts ("a CT scan of the head", one per modality and location
category) are embedded by a CLIP model; an image is classified by the prompt it
matches best, which gives its modality (CT or MR) and its location category
(Head, Thorax, Abdomen, Spine and Muscles, Reproductive and Urinary System).
Training minimises the cross-entropy of each image against all prompts. With
``--model`` a local CLIP checkpoint is fine-tuned; without it a small CLIP is
trained from scratch with a character-level tokenizer, offline, on a CPU in
minutes. Rows are streamed from the built shards. The evaluation writes
``MODEL_DIR/metrics.json``: ``modality_accuracy``, ``location_accuracy``,
``confusion`` (and chance and majority-class baselines); the model is saved with
``save_pretrained``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from medtrinity_25m import stream

MODALITIES = {"ct": "CT", "mri": "MR"}
LOCATIONS = ("Head", "Thorax", "Abdomen", "Spine and Muscles", "Reproductive and Urinary System")
CLASSES = [(m, loc) for m in MODALITIES for loc in LOCATIONS]
PROMPTS = [f"a {MODALITIES[m]} scan of the {loc.lower()}" for m, loc in CLASSES]


def character_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer over single characters (byte-level, no merges): needs no download."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for char in bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def new_model(folder: Path, image_size: int) -> tuple[Any, Any]:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = character_tokenizer(folder / "tokenizer")
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 128, "intermediate_size": 256,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
                     # the text embedding is read at the end-of-text token: it must be this vocabulary's
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 192, "intermediate_size": 384, "num_hidden_layers": 4,
                       "num_attention_heads": 4, "image_size": image_size, "patch_size": 8},
        projection_dim=128)
    size = {"shortest_edge": image_size}
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size=size, crop_size={"height": image_size,
                                                                                     "width": image_size}),
                              tokenizer=tokenizer)
    return CLIPModel(config), processor


def rows(folder: Path) -> Iterator[tuple[np.ndarray, int]]:
    """(image, class index) of every CT/MR row with a known location category, streamed."""
    split = next(p.name.split("-")[0] for p in sorted((folder / "data").glob("*/*.parquet")))
    for row in stream(str(folder), "all", split=split, columns=("image", "modality", "location")):
        if row["modality"] in MODALITIES and row["location"] in LOCATIONS:
            yield row["image"], CLASSES.index((row["modality"], row["location"]))


def rgb(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels).convert("RGB")


def batches(items: list[tuple[np.ndarray, int]], size: int, rng: np.random.Generator | None) -> Iterator[list]:
    order = rng.permutation(len(items)) if rng is not None else np.arange(len(items))
    for start in range(0, len(items), size):
        yield [items[i] for i in order[start:start + size]]


def logits(model: Any, processor: Any, images: list[Image.Image], text: dict[str, Any]) -> torch.Tensor:
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    return model(pixel_values=pixels, **text).logits_per_image


def train(args: argparse.Namespace) -> None:
    from transformers import CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    hf_logging.set_verbosity_error()
    rng = np.random.default_rng(0)
    if args.model:
        model, processor = CLIPModel.from_pretrained(args.model), CLIPProcessor.from_pretrained(args.model)
    else:
        model, processor = new_model(args.out, args.image_size)
    text = processor.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    items = list(rows(args.train))
    evaluation = list(rows(args.eval))
    print(f"{len(items)} training rows, {len(evaluation)} evaluation rows, {len(PROMPTS)} prompts", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for batch in batches(items, args.batch_size, rng):
            images = [augment(rgb(x), rng) for x, _ in batch]
            loss = torch.nn.functional.cross_entropy(logits(model, processor, images, text),
                                                     torch.tensor([y for _, y in batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(items):.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    metrics = evaluate(model, processor, text, evaluation, [y for _, y in items])
    metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if k != "confusion"}, indent=2))


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image.rotate(float(rng.uniform(-10, 10)))


@torch.no_grad()
def predict(model: Any, processor: Any, text: dict[str, Any], images: list[Image.Image]) -> list[int]:
    model.eval()
    found: list[int] = []
    for start in range(0, len(images), 64):
        found += logits(model, processor, images[start:start + 64], text).argmax(-1).tolist()
    return found


def evaluate(model: Any, processor: Any, text: dict[str, Any], items: list[tuple[np.ndarray, int]],
             train_labels: list[int]) -> dict[str, Any]:
    guesses = predict(model, processor, text, [rgb(x) for x, _ in items])
    truth = [y for _, y in items]
    modality = lambda i: CLASSES[i][0]  # noqa: E731
    location = lambda i: CLASSES[i][1]  # noqa: E731
    majority_modality = Counter(modality(y) for y in train_labels).most_common(1)[0][0]
    majority_location = Counter(location(y) for y in train_labels).most_common(1)[0][0]

    def accuracy(part: Any, guess: list[Any]) -> float:
        return round(float(np.mean([part(t) == g for t, g in zip(truth, guess)])), 4)

    def confusion(part: Any, labels: list[str]) -> list[list[int]]:
        table = [[0] * len(labels) for _ in labels]
        for t, g in zip(truth, guesses):
            table[labels.index(part(t))][labels.index(part(g))] += 1
        return table

    return {
        "evaluated": len(items),
        "modality_accuracy": accuracy(modality, [modality(g) for g in guesses]),
        "location_accuracy": accuracy(location, [location(g) for g in guesses]),
        "chance": {"modality": 1 / len(MODALITIES), "location": 1 / len(LOCATIONS)},
        "majority_class": {"modality": accuracy(modality, [majority_modality] * len(items)),
                           "location": accuracy(location, [majority_location] * len(items))},
        "confusion": {"modality": {"labels": list(MODALITIES), "rows_true_columns_predicted":
                                   confusion(modality, list(MODALITIES))},
                      "location": {"labels": list(LOCATIONS), "rows_true_columns_predicted":
                                   confusion(location, list(LOCATIONS))}},
    }


def predict_main(model_dir: Path, targets: list[Path]) -> None:
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(model_dir), CLIPProcessor.from_pretrained(model_dir)
    text = processor.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    named: list[tuple[str, Image.Image]] = []
    for target in targets:
        if (target / "data").is_dir():
            named += [(f"{target}:{i}", rgb(x)) for i, (x, _) in enumerate(rows(target))]
        else:
            named.append((str(target), Image.open(target).convert("RGB")))
    for (name, _), guess in zip(named, predict(model, processor, text, [img for _, img in named])):
        modality, location = CLASSES[guess]
        print(json.dumps({"input": name, "modality": modality, "location": location}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path)
    parser.add_argument("--eval", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model", type=Path, help="a local CLIP checkpoint to fine-tune")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--predict", type=Path, nargs="+", metavar="MODEL_DIR INPUT",
                        help="classify images or built folders with a trained model")
    args = parser.parse_args()
    if args.predict:
        if len(args.predict) < 2:
            parser.error("--predict takes MODEL_DIR then images or built folders")
        return predict_main(args.predict[0], args.predict[1:])
    if not (args.train and args.eval and args.out):
        parser.error("training needs --train, --eval and --out")
    train(args)


if __name__ == "__main__":
    main()
