"""SQL over a built dataset's Parquet shards, with DuckDB (embedded, no server).

The table ``samples`` holds every column but the image and mask bytes, plus
``split`` (from the shard's name), ``has_mask``, ``n_rois``, ``search_text``
(what free text searches), ``file`` and ``file_row`` (where the row's bytes
live, for :meth:`Catalog.image`)::

    medtri-build query OUT "SELECT modality, count(*) FROM samples GROUP BY modality"
    medtri-build query OUT --field organ=brain --field disease='glio|astro' --where "age > '60'"

Pattern filters are case-insensitive regular expressions, one per field, as
in MedPix's GUI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow.parquet as pq

from builder.dataset.shards import SHARD_NAME, LayoutError, parquet_files
from builder.errors import install_hint

#: Columns a pattern filter may name (nested ones by their SQL expression).
FILTER_FIELDS: dict[str, str] = {
    "id": "id", "modality": "modality", "organ": "organ", "disease": "disease", "location": "location",
    "source": "source", "split": "split", "case_id": "case_id", "plane": "plane",
    "coarse_caption": "coarse_caption", "caption": "caption",
    "reference": "concat_ws(' ', reference.caption, reference.findings, reference.diagnosis)",
}
#: Image fields of a published release's documents, queryable on ``samples`` (MedPix 2.0's names).
IMAGE_FIELDS = (("ACR Codes", "acr_codes"), ("Figure Part", "figure_part"), ("Caption", "image_caption"))
#: What free text searches: lower-cased once, when the catalog opens.
FREE_TEXT = ("lower(concat_ws(' ', coarse_caption, caption, disease, organ, location, "
             "reference.caption, reference.findings, reference.diagnosis))")


class CatalogError(ValueError):
    """A dataset folder without Parquet shards, a bad filter or bad SQL."""


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise CatalogError(f"the catalog needs DuckDB: {install_hint('catalog')}") from None
    return duckdb


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class Catalog:
    """A DuckDB connection with the ``samples`` table of one dataset folder."""

    def __init__(self, out: Path, materialize: bool = False) -> None:
        duckdb = _duckdb()
        try:
            files = parquet_files(out)
        except LayoutError as exc:
            raise CatalogError(str(exc)) from None
        if not files:
            raise CatalogError(f"{out} holds no Parquet shards under data/")
        self.out = out
        self.con = duckdb.connect()
        documents = "record" in pq.ParquetFile(files[0]).schema_arrow.names
        fields = "".join(f", json_extract_string(record, '$.description.Description.\"{key}\"') AS {name}"
                         for key, name in IMAGE_FIELDS) if documents else ""
        source = (
            f"SELECT * EXCLUDE (image, mask, filename, file_row_number){fields}, "
            f"regexp_extract(filename, '{SHARD_NAME}', 1) AS split, mask IS NOT NULL AS has_mask, "
            f"len(rois) AS n_rois, {FREE_TEXT} AS search_text, filename AS file, file_row_number AS file_row "
            "FROM read_parquet(?, filename=true, file_row_number=true)"
        )
        kind = "TABLE" if materialize else "VIEW"
        if materialize:
            self.con.execute(f"CREATE {kind} samples AS {source}", [[str(f) for f in files]])
        else:  # a view cannot take parameters: spell the file list out
            listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            self.con.execute(f"CREATE {kind} samples AS {source.replace('?', '[' + listed + ']')}")
        self._files: dict[str, pq.ParquetFile] = {}
        if documents:
            self._cases()

    def _cases(self) -> None:
        """The ``cases`` table: one row per clinical case of a release that publishes them (MedPix 2.0)."""
        import json

        import pyarrow as pa

        from builder.dataset.medpix_export import case_rows

        found = self.con.execute("SELECT any_value(record) FROM samples WHERE record IS NOT NULL "
                                 "GROUP BY case_id").fetchall()
        cases = [c for c in (json.loads(r[0]).get("case") for r in found) if isinstance(c, dict)]
        rows = case_rows(cases)
        if not rows:  # no source of this dataset publishes cases
            return
        names = list(dict.fromkeys(k for row in rows for k in row))
        columns = {n: [None if r.get(n) is None else r[n] if isinstance(r[n], str) else json.dumps(r[n])
                       for r in rows] for n in names}
        self.con.register("cases_source", pa.table({n: pa.array(v, pa.string()) for n, v in columns.items()}))
        self.con.execute("CREATE TABLE cases AS SELECT * FROM cases_source")
        self.con.unregister("cases_source")

    def sql(self, query: str, params: Sequence[Any] = ()) -> Result:
        try:
            cursor = self.con.execute(query, list(params))
        except Exception as exc:  # duckdb's errors have many types
            raise CatalogError(str(exc).splitlines()[0]) from None
        columns = [d[0] for d in cursor.description or []]
        return Result(columns, cursor.fetchall())

    def where(self, patterns: Mapping[str, str], where: str | None = None,
              text: str | None = None) -> tuple[str, list[Any]]:
        """A WHERE clause (and its parameters) from pattern filters, free text and raw SQL."""
        clauses, params = [], []
        for name, pattern in patterns.items():
            if not pattern:
                continue
            if name not in FILTER_FIELDS:
                raise CatalogError(f"no field {name!r} to filter (fields: {', '.join(FILTER_FIELDS)})")
            clauses.append(f"regexp_matches(coalesce({FILTER_FIELDS[name]}, ''), ?, 'i')")
            params.append(pattern)
        if text:
            clauses.append("contains(search_text, ?)")
            params.append(text.lower())
        if where:
            clauses.append(f"({where})")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def search(self, patterns: Mapping[str, str], where: str | None = None, text: str | None = None,
               columns: str = "*", limit: int = 50, offset: int = 0) -> tuple[int, Result]:
        clause, params = self.where(patterns, where, text)
        total = self.sql(f"SELECT count(*) FROM samples{clause}", params).rows[0][0]
        page = self.sql(f"SELECT {columns} FROM samples{clause} ORDER BY source, source_file, slice_index "
                        f"LIMIT {int(limit)} OFFSET {int(offset)}", params)
        return total, page

    def image(self, row_id: str, column: str = "image") -> bytes | None:
        """The PNG bytes of a row's image or mask, read from its shard's row group."""
        found = self.sql("SELECT file, file_row FROM samples WHERE id = ?", [row_id]).rows
        if not found:
            return None
        file, index = found[0]
        parquet = self._files.get(file) or self._files.setdefault(file, pq.ParquetFile(file))
        group, start = 0, 0
        while start + parquet.metadata.row_group(group).num_rows <= index:
            start += parquet.metadata.row_group(group).num_rows
            group += 1
        cell = parquet.read_row_group(group, columns=[column]).column(0)[index - start].as_py()
        return cell["bytes"] if cell else None
