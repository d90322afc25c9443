"""The model stage against a local OpenAI-compatible server with a fixed delay: does the build keep it saturated?

    python tools/bench_llm.py [--delay 0.25] [--concurrency 1 8 32 128]

For each concurrency C, in this one run: the ideal rate C/delay, the project's
client alone (C threads calling the server, no build), and ``medtri-build build
--describer openai --llm-concurrency C --workers 2`` on small images (MedPix 2.0
test images scaled to 48 px, so the workers can supply rows faster than the
model answers), and the same build with the template describer (the workers
alone: the rate they can supply rows at, which bounds the stage where it is
below the ideal). Then the fault cases at the largest C whose clean build reached 0.9
of the ideal (where the fault handling, not the machine, is measured): 10% of calls
answered 429 (with Retry-After: 0.5) or 500, and one call that hangs 5 s, on a
longer run (``--fault-seconds``); their rates against the clean build's, and whether every input is accounted for.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from llm_server import ChatServer

from builder.llm import ChatClient, LLMConfig

KEYS = ("modality", "organ_detection", "roi_analysis", "texture", "region_relationship")
ANSWER = json.dumps({k: f"{k} text" for k in KEYS})
TEST = ROOT.parent / "shared" / "data" / "medpix-2.0" / "test" / "images"


def answers(delay: float, faults: str = "", seed: int = 0):
    rng, lock, hung = random.Random(seed), threading.Lock(), [False]

    def answer(request: dict) -> object:
        with lock:
            roll, hang = rng.random(), faults == "hung" and not hung[0] and rng.random() < 0.02
            hung[0] |= hang
        time.sleep(5.0 if hang else delay)
        if faults == "errors" and roll < 0.05:
            return (429, {"Retry-After": "0.5"})
        if faults == "errors" and roll < 0.10:
            return 500
        return ANSWER
    return answer


def images(folder: Path, rows: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(TEST.glob("*.png"))
    for i in range(rows):
        Image.open(sources[i % len(sources)]).convert("L").resize((48, 48)).save(folder / f"s{i:05d}.png")


def client_alone(url: str, concurrency: int, calls: int) -> float:
    client = ChatClient(LLMConfig(base_url=url, model="vlm", concurrency=concurrency))
    messages = [{"role": "user", "content": "describe"}]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: client.ask(messages, lambda text: text), range(calls)))
    return calls / (time.perf_counter() - start)


def build(work: Path, url: str, concurrency: int, rows: int, tag: str, describer: str = "openai") -> dict:
    manifest = work / f"m{rows}.yaml"
    manifest.write_text(json.dumps({"sources": [{"name": "scans", "format": "image", "modality": "ct",
                                                 "images": f"scans{rows}/*.png"}]}))
    out = work / f"out-{tag}-{concurrency}"
    env = dict(os.environ, MEDTRI_CACHE_DIR=str(work / "cache"), MEDTRI_CONFIG_DIR=str(work / "config"))
    start = time.perf_counter()
    model = ["--llm-base-url", url, "--llm-model", "vlm", "--llm-concurrency", str(concurrency),
             "--no-answer-cache"] if describer == "openai" else []
    done = subprocess.run([sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out), "--workers",
                           "2", "--describer", describer, *model, "--quiet"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    summary = json.loads((out / "build.json").read_text()) if (out / "build.json").is_file() else {}
    stage = summary.get("model_stage", {})
    accounted = summary.get("rows", {}).get("total", 0) + summary.get("rejects", {}).get("total", 0)
    return {"exit": done.returncode, "rows": summary.get("rows", {}).get("total", 0), "accounted": accounted,
            "whole_run_rows_per_s": round(rows / seconds, 1), "build_clock_rows_per_s": summary.get("rows_per_second"),
            "model_stage_rows_per_s": stage.get("rows_per_second"),
            "peak_in_flight": stage.get("peak_in_flight")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.25)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seconds", type=float, default=6.0, help="ideal model time per build")
    parser.add_argument("--fault-seconds", type=float, default=30.0,
                        help="ideal model time of the fault cases: long enough that the last rows' retries (the "
                             "backoff doubles, 0.5 + 1 + 2 s) weigh on the rate as little as at dataset scale")
    args = parser.parse_args()
    results: dict = {"delay": args.delay, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for concurrency in args.concurrency:
            ideal = concurrency / args.delay
            rows = max(40, int(ideal * args.seconds))
            images(work / f"scans{rows}", rows)
            with ChatServer(answers(args.delay)) as server:
                alone = client_alone(server.url, concurrency, min(rows, int(ideal * 3)))
                run = build(work, server.url, concurrency, rows, "clean")
            workers = build(work, "", concurrency, rows, "template", describer="template")["build_clock_rows_per_s"]
            bound = min(ideal, workers or ideal)
            run.update(concurrency=concurrency, rows_in=rows, ideal=ideal, client_alone=round(alone, 1),
                       workers_alone=workers, bound=bound)
            run["model_stage_vs_ideal"] = round((run["model_stage_rows_per_s"] or 0) / ideal, 3)
            run["model_stage_vs_bound"] = round((run["model_stage_rows_per_s"] or 0) / bound, 3)
            run["model_stage_vs_client_alone"] = round((run["model_stage_rows_per_s"] or 0) / alone, 3)
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
        # the fault cases measure fault handling, so they run where the clean build kept up with the model
        keeping_up = [r for r in results["runs"] if r["model_stage_vs_ideal"] >= 0.9] or results["runs"][:1]
        clean = max(keeping_up, key=lambda r: r["concurrency"])
        concurrency = clean["concurrency"]
        rows = max(40, int(concurrency / args.delay * args.fault_seconds))
        images(work / f"scans{rows}", rows)
        for faults in ("errors", "hung"):
            with ChatServer(answers(args.delay, faults)) as server:
                run = build(work, server.url, concurrency, rows, faults)
            run.update(faults=faults, concurrency=concurrency, rows_in=rows)
            run["vs_clean"] = round((run["model_stage_rows_per_s"] or 0) / clean["model_stage_rows_per_s"], 3)
            results["runs"].append(run)
            print(json.dumps(run), flush=True)


if __name__ == "__main__":
    main()
