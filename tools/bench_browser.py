"""How the browser's queries scale: a dataset of N rows made by repeating a built one.

    python tools/bench_browser.py BUILT_DIR --rows 100000

Copies BUILT_DIR's rows (with fresh ids) into a temporary dataset of --rows rows,
then times what the page asks for: facets, a filtered search page, a free-text
search, one sample, one thumbnail. Prints a Markdown table (median of 5).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from builder.dataset.serve import Browser


def grow(source: Path, out: Path, rows: int) -> None:
    table = pa.concat_tables(pq.read_table(f) for f in sorted((source / "data").rglob("*.parquet")))
    copies = -(-rows // len(table))
    for modality in pc.unique(table["modality"]).to_pylist():
        part = table.filter(pc.equal(table["modality"], modality))
        folder = out / "data" / modality
        folder.mkdir(parents=True)
        with pq.ParquetWriter(folder / "train-00000-of-00001.parquet", table.schema) as writer:
            for copy in range(copies):
                ids = pc.binary_join_element_wise(part["id"], pa.scalar(f"-{copy}"), "")
                writer.write_table(part.set_column(0, "id", ids), row_group_size=100)


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("built", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        grow(args.built, Path(tmp), args.rows)
        start = time.perf_counter()
        browser = Browser(Path(tmp))
        load = time.perf_counter() - start
        total = browser.catalog.sql("SELECT count(*) FROM samples").rows[0][0]
        some_id = browser.catalog.sql("SELECT id FROM samples ORDER BY id DESC LIMIT 1").rows[0][0]
        cases = {
            "facets": lambda: browser.facets(),
            "search page (modality + organ regex)": lambda: browser.search({"modality": "ct", "organ": "chest|abdo"}),
            "free-text search": lambda: browser.search({"q": "lesion"}),
            "sample view (one row)": lambda: browser.sample(some_id),
            "full image from its row group": lambda: browser.image(some_id),
            "thumbnail (uncached)": lambda: browser._thumb(some_id),
        }
        print(f"{total} rows; catalog loaded in {load:.2f} s\n")
        print("| request | median ms |\n|---|---|")
        for name, fn in cases.items():
            print(f"| {name} | {timed(fn):.1f} |")


if __name__ == "__main__":
    main()
