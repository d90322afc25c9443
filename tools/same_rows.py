"""The rows a commit builds: sha256 of every shard of the demo and of the atlas workload, as JSON.

    python tools/same_rows.py [--copies 3] > rows-before.json   # at one commit
    python tools/same_rows.py [--copies 3] > rows-after.json    # at another
    diff rows-before.json rows-after.json                       # nothing: the same bytes

A change that should not touch the output (a refactoring, a speed-up) is checked this way: the demo with one
worker and the Colin27 + AAL atlas (``tools/bench_atlas.py``'s workload) with two, both formats, a fixed id key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

KEY = "0" * 64  # a fixed id key: the ids (and so the bytes) do not depend on the user's key file


def shard_hashes(out: Path) -> dict[str, str]:
    summary = json.loads((out / "build.json").read_text())
    return {path: hashlib.sha256((out / path).read_bytes()).hexdigest()
            for path in summary["published"] if path not in ("README.md",)}


def build(args: list[str], out: Path, env: dict[str, str]) -> dict[str, str]:
    subprocess.run([sys.executable, "-m", "builder", *args, "--out", str(out), "--format", "both", "--quiet"],
                   check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return shard_hashes(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="copies of the atlas volume")
    args = parser.parse_args()
    from bench_atlas import workload

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = dict(os.environ, MEDTRI_CONFIG_DIR=str(work / "config"), MEDTRI_ID_KEY=KEY, PYTHONPATH=str(ROOT))
        report = {"demo": build(["demo", "--workers", "1"], work / "demo", env),
                  "atlas": build(["build", str(workload(work / "atlas", args.copies)), "--workers", "2"],
                                 work / "atlas-out", env)}
    print(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
