"""The two CLIP models `train_clip.py` trains: a pretrained checkpoint fine-tuned, or a small one made offline.

Both match an image against text prompts ("a CT scan of the head") and expose one
interface, `ScanModel`: `prepare` turns images into the tensor the image tower
takes, `logits` scores each image against each prompt, `save` writes a folder that
`load` reads back.

- `PretrainedClip`: any local CLIP checkpoint `transformers` loads (`CLIPModel` and
  `CLIPProcessor`, e.g. a saved `openai/clip-vit-base-patch32` or a converted
  open_clip model), fine-tuned end to end.
- `ConvClip`: the offline default. A CLIP whose image tower is a small convolutional
  network (a ViT trained from scratch on 1,600 images stays near 0.85 on CT vs MR;
  convolutions learn the texture and intensity cues that tell CT from MR from few
  images) and whose text tower is a 2-layer `CLIPTextModelWithProjection` over a
  character tokenizer, so nothing is downloaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from PIL import Image
from torch import nn

__all__ = ["ConvClip", "PretrainedClip", "ScanModel", "character_tokenizer", "load", "new_model"]

KIND_FILE = "scan_clip.json"


class ScanModel(Protocol):
    @property
    def module(self) -> nn.Module: ...

    def prepare(self, images: list[Image.Image]) -> torch.Tensor: ...

    def logits(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor: ...

    def save(self, folder: Path) -> None: ...


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


class PretrainedClip:
    """A `transformers` CLIP checkpoint from a local folder."""

    def __init__(self, folder: Path) -> None:
        from transformers import CLIPModel, CLIPProcessor

        self.module = CLIPModel.from_pretrained(folder)
        self.processor = CLIPProcessor.from_pretrained(folder)

    def prepare(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=[i.convert("RGB") for i in images], return_tensors="pt")["pixel_values"]

    def logits(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        text = self.processor.tokenizer(prompts, padding=True, return_tensors="pt")
        return self.module(pixel_values=pixels, **text).logits_per_image

    def save(self, folder: Path) -> None:
        self.module.save_pretrained(folder)
        self.processor.save_pretrained(folder)


def _stage(inputs: int, outputs: int, convolutions: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convolutions):
        layers += [nn.Conv2d(inputs if i == 0 else outputs, outputs, 3, padding=1, bias=False),
                   nn.BatchNorm2d(outputs), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class _ConvClipModule(nn.Module):
    def __init__(self, config: dict[str, Any], text: nn.Module) -> None:
        super().__init__()
        width = config["width"]
        self.image = nn.Sequential(
            nn.Conv2d(1, width, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            _stage(width, width, 1), _stage(width, 2 * width, 1),
            _stage(2 * width, 4 * width, 2), _stage(4 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * width, config["projection_dim"]))
        self.text = text
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


class ConvClip:
    """The offline CLIP: a small CNN image tower, a character-level CLIP text tower."""

    defaults: ClassVar[dict[str, int]] = {"image_size": 96, "width": 24, "projection_dim": 128}

    def __init__(self, tokenizer: Any, config: dict[str, Any] | None = None) -> None:
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        self.config = {**self.defaults, **(config or {})}
        self.tokenizer = tokenizer
        text = CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(self.tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, projection_dim=self.config["projection_dim"],
            # the text embedding is read at the end-of-text token: it must be this vocabulary's
            bos_token_id=self.tokenizer.bos_token_id, eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id))
        self.net = _ConvClipModule(self.config, text)
        self.module: nn.Module = self.net

    def prepare(self, images: list[Image.Image]) -> torch.Tensor:
        size = (self.config["image_size"],) * 2
        gray = [torch.frombuffer(bytearray(i.convert("L").resize(size, Image.Resampling.BILINEAR).tobytes()),
                                 dtype=torch.uint8) for i in images]
        return torch.stack(gray).reshape(len(images), 1, *size).float().div(255)

    def logits(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        text = self.tokenizer(prompts, padding=True, return_tensors="pt")
        texts = nn.functional.normalize(self.net.text(**text).text_embeds, dim=-1)
        images = nn.functional.normalize(self.net.image(pixels), dim=-1)
        return self.net.logit_scale.exp() * images @ texts.T

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.module.state_dict(), str(folder / "model.safetensors"))
        (folder / KIND_FILE).write_text(json.dumps({"kind": "conv-clip", **self.config}, indent=2) + "\n")
        self.tokenizer.save_pretrained(folder / "tokenizer")


def new_model(folder: Path, pretrained: Path | None, image_size: int) -> ScanModel:
    """The model to train: the checkpoint in `pretrained`, or a new offline CLIP."""
    if pretrained is not None:
        return PretrainedClip(pretrained)
    return ConvClip(character_tokenizer(folder / "tokenizer"), {"image_size": image_size})


def load(folder: Path) -> ScanModel:
    """A model `save` wrote: either kind."""
    if not (folder / KIND_FILE).is_file():
        return PretrainedClip(folder)
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    config = json.loads((folder / KIND_FILE).read_text())
    config.pop("kind")
    model = ConvClip(CLIPTokenizer.from_pretrained(folder / "tokenizer"), config)
    model.module.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model
