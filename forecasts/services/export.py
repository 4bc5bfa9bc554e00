"""Readings export: a query result as CSV or Parquet bytes."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.parquet as pq

from cloud.interfaces import QueryResult

EXPORT_FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def readings_export_bytes(result: QueryResult, fmt: str) -> bytes:
    """Return the rows as CSV (header, ISO-8601 UTC times) or zstd Parquet; raise ValueError for another format."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow(["" if value is None else _csv_value(value) for value in row])
        return buffer.getvalue().encode()
    if fmt == "parquet":
        table = pa.table({name: [row[i] for row in result.rows] for i, name in enumerate(result.columns)})
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()
    raise ValueError(f"unknown export format {fmt!r}: use {' or '.join(EXPORT_FORMATS)}")


def _csv_value(value: object) -> object:
    isoformat = getattr(value, "isoformat", None)
    return isoformat().replace("+00:00", "Z") if isoformat else value
