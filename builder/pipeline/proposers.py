"""ROI proposals for images whose source gives no mask or box.

Chosen per source in the manifest::

    roi:
      method: classical | transformers | command
      model: PATH                           # transformers: a local checkpoint folder
      command: "python seg.py {input} {output}"   # command: any expert model
      prompt: "{disease} in the {organ}"    # a template over the row's fields
      threshold: 0.3
      max_rois: 3
      mode: fill                            # fill: only rows without ROIs; add: always

A proposer returns :class:`Proposal` objects (a mask or a box, a label, a
score); the ROI stage turns them into ROIs exactly as it does annotations, with
``origin`` set to the proposer's name and ``score`` kept.

- ``classical`` (offline, no model): the body or specimen region, and salient
  bright structures inside it, by thresholding, connected components and
  morphology (scipy). The foreground is the Otsu class that does not hold most
  of the image border; its largest component, holes filled and opened, is the
  "body region" (radiology) or "foreground region" (other modalities).
  "bright focal region"s are components of pixels above the 99th percentile of
  the region, between 0.05% and 5% of its area. It never names a disease.
- ``transformers``: a zero-shot object detection checkpoint (OWL-ViT, OWLv2,
  Grounding DINO) through transformers' pipeline, prompted with the rendered
  ``prompt``; on GPU when one is present.
- ``command``: runs once per input file (all its slices at once). It receives
  ``{input}``, a folder of ``<key>.png`` images and ``prompts.jsonl`` lines
  ``{"image": "<key>.png", "prompt": "..."}``, and ``{output}``, a folder where
  it writes, per image, ``<key>_mask.png`` (a label map: 0 background, one value
  per region) and optionally ``<key>.json``:
  ``{"labels": {"1": "liver"}, "scores": {"1": 0.9}, "boxes": [[x0, y0, x1, y1, "label", score]]}``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from builder.errors import ManifestError, Reject
from builder.imaging import RADIOLOGY
from builder.imaging import gray as to_gray
from builder.pipeline.values import choice, fraction, integer, text
from builder.privacy import command_env, redact
from builder.registry import Registry


@dataclass(frozen=True)
class RoiConfig:
    """ROI proposals of a source (:mod:`builder.pipeline.proposers`)."""

    method: str = field(default="classical", metadata={"parse": lambda v, r, k: choice(v, k, tuple(PROPOSERS)),
                                                       "required": True})
    model: str | None = field(default=None, metadata={"parse": text})
    command: str | None = field(default=None, metadata={"parse": text})
    prompt: str = field(default="{disease} in the {organ}", metadata={"parse": text})
    threshold: float = field(default=0.3, metadata={"parse": fraction})
    max_rois: int = field(default=3, metadata={"parse": lambda v, r, k: integer(1)(v, k)})
    mode: str = field(default="fill", metadata={"parse": lambda v, r, k: choice(v, k, ("fill", "add"))})
    timeout: float = 600.0  # command: seconds per input file

    def check(self) -> None:
        if self.method == "transformers" and not self.model:
            raise ManifestError("model", "is required by method transformers")
        if self.method == "command" and not self.command:
            raise ManifestError("command", "is required by method command")


@dataclass(frozen=True)
class Proposal:
    label: str
    score: float
    mask: np.ndarray | None = None  # boolean, the image's shape
    box: tuple[float, float, float, float] | None = None  # pixel-edge [x0, y0, x1, y1]


@dataclass(frozen=True)
class ProposalInput:
    key: str
    pixels: np.ndarray
    modality: str
    prompt: str


class Proposer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def options(self) -> type:
        """Its settings: the manifest's ``roi:`` mapping (:class:`RoiConfig`)."""
        ...

    def propose(self, inputs: Sequence[ProposalInput], config: RoiConfig) -> list[list[Proposal]]: ...


def otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    centers = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * centers)
    total, total_mean = weight[-1], mean[-1]
    between = (total_mean * weight - total * mean) ** 2 / np.maximum(weight * (total - weight), 1)
    return float(centers[int(np.argmax(between[:-1]))])


@dataclass(frozen=True)
class ClassicalProposer:
    name: str = "classical"
    options: type = RoiConfig

    def propose(self, inputs: Sequence[ProposalInput], config: RoiConfig) -> list[list[Proposal]]:
        return [self._one(item, config) for item in inputs]

    def _one(self, item: ProposalInput, config: RoiConfig) -> list[Proposal]:
        from scipy import ndimage

        gray = to_gray(item.pixels)
        low, high = float(gray.min()), float(gray.max())
        if high <= low:
            return []
        edge = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        if np.median(edge) > np.median(gray):  # a bright background (a slide): make it dark
            gray = high + low - gray
        dark = gray <= low + 0.5 * (otsu(gray) - low)
        labels, _ = ndimage.label(dark)
        outside = np.isin(labels, np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
        region = ndimage.binary_opening(~(outside & dark), iterations=2)
        labels, count = ndimage.label(region)
        if count == 0:
            return []
        sizes = ndimage.sum(region, labels, range(1, count + 1))
        region = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
        name = "body region" if item.modality in RADIOLOGY else "foreground region"
        proposals = [Proposal(name, float(region.mean()), mask=region)]
        return proposals + self._bright(gray, region, config.max_rois - 1)

    @staticmethod
    def _bright(gray: np.ndarray, region: np.ndarray, limit: int) -> list[Proposal]:
        from scipy import ndimage

        if limit <= 0 or region.sum() < 100:
            return []
        inside = gray[region]
        spots = region & (gray > np.percentile(inside, 99)) & (gray > inside.mean() + 2 * inside.std())
        spots = ndimage.binary_opening(spots)
        labels, count = ndimage.label(spots)
        area = float(region.sum())
        found = []
        for index in range(1, count + 1):
            blob = labels == index
            share = blob.sum() / area
            if 0.0005 <= share <= 0.05:
                contrast = (gray[blob].mean() - inside.mean()) / max(float(inside.std()), 1e-6)
                found.append(Proposal("bright focal region", float(min(1.0, contrast / 10)), mask=blob))
        return sorted(found, key=lambda p: -p.score)[:limit]


_MODELS: dict[str, Any] = {}  # one pipeline per worker process


@dataclass(frozen=True)
class TransformersProposer:
    name: str = "transformers"
    options: type = RoiConfig

    def _pipeline(self, model: str) -> Any:
        if model not in _MODELS:
            import torch
            from transformers import pipeline

            _MODELS[model] = pipeline("zero-shot-object-detection", model=model,
                                      device=0 if torch.cuda.is_available() else -1)
        return _MODELS[model]

    def propose(self, inputs: Sequence[ProposalInput], config: RoiConfig) -> list[list[Proposal]]:
        if not config.model:
            raise Reject("roi", "roi method transformers needs 'model' (a local checkpoint folder)")
        detector = self._pipeline(config.model)
        found = []
        for item in inputs:
            image = Image.fromarray(item.pixels).convert("RGB")
            hits = detector(image, candidate_labels=[item.prompt or "region"], threshold=config.threshold)
            proposals = []
            for hit in sorted(hits, key=lambda h: -h["score"])[: config.max_rois]:
                box = hit["box"]
                x0, y0 = max(0.0, float(box["xmin"])), max(0.0, float(box["ymin"]))
                x1, y1 = min(float(image.width), float(box["xmax"]) + 1), min(float(image.height),
                                                                             float(box["ymax"]) + 1)
                if x1 > x0 and y1 > y0:
                    proposals.append(Proposal(hit["label"], float(hit["score"]), box=(x0, y0, x1, y1)))
            found.append(proposals)
        return found


@dataclass(frozen=True)
class CommandProposer:
    name: str = "command"
    options: type = RoiConfig

    def propose(self, inputs: Sequence[ProposalInput], config: RoiConfig) -> list[list[Proposal]]:
        if not config.command:
            raise Reject("roi", "roi method command needs 'command'")
        with tempfile.TemporaryDirectory(prefix="medtri-roi-") as tmp:
            source, target = Path(tmp) / "input", Path(tmp) / "output"
            source.mkdir()
            target.mkdir()
            with open(source / "prompts.jsonl", "w", encoding="utf-8") as fh:
                for item in inputs:
                    Image.fromarray(item.pixels).save(source / f"{item.key}.png")
                    fh.write(json.dumps({"image": f"{item.key}.png", "prompt": item.prompt}) + "\n")
            argv = [a.replace("{input}", str(source)).replace("{output}", str(target))
                    for a in shlex.split(config.command)]
            try:  # no token or key of the caller's environment reaches the command
                done = subprocess.run(argv, capture_output=True, text=True, timeout=config.timeout,
                                      env=command_env(), stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise Reject("roi", f"roi command failed to run ({type(exc).__name__}: {redact(str(exc))})") from None
            if done.returncode != 0:
                raise Reject("roi", f"roi command exited {done.returncode}: {redact(done.stderr.strip()[-300:])}")
            return [_read_command_output(target, item) for item in inputs]


def _read_command_output(folder: Path, item: ProposalInput) -> list[Proposal]:
    extra: Mapping[str, Any] = {}
    if (folder / f"{item.key}.json").is_file():
        try:
            extra = json.loads((folder / f"{item.key}.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise Reject("roi", f"roi command wrote unreadable {item.key}.json ({exc.msg})") from None
    labels, scores = extra.get("labels", {}), extra.get("scores", {})
    proposals = []
    mask_path = folder / f"{item.key}_mask.png"
    if mask_path.is_file():
        labelmap = np.asarray(Image.open(mask_path))
        if labelmap.shape[:2] != item.pixels.shape[:2]:
            raise Reject("roi", f"roi command's mask for {item.key} is {labelmap.shape[:2]}, "
                                f"image is {item.pixels.shape[:2]}")
        for value in (int(v) for v in np.unique(labelmap) if v != 0):
            proposals.append(Proposal(str(labels.get(str(value), f"region {value}")),
                                      float(scores.get(str(value), 1.0)), mask=labelmap == value))
    for x0, y0, x1, y1, label, score in extra.get("boxes", []):
        proposals.append(Proposal(str(label), float(score), box=(float(x0), float(y0), float(x1), float(y1))))
    return proposals


PROPOSERS: Registry[Proposer] = Registry("proposers", {
    "classical": ClassicalProposer(),
    "transformers": TransformersProposer(),
    "command": CommandProposer(),
})
