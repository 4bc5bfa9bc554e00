"""The Glue job script (PySpark, Glue 4.0): raw telemetry NDJSON -> curated Parquet, as the local DuckDB job.

GlueEtlJob uploads this file to the lake (scripts/glue/telemetry_etl.py) and runs it with:
  --lake s3://bucket/prefix     the lake root (raw/, curated/telemetry/, errors/etl-failed/, state/ under it)
  --metrics ozone,...           the known numeric columns, in order (the project's DEFAULT_METRICS + location)
  --ranges {"ozone": [0, 1000]} physical ranges per metric, inclusive (the project's DEFAULT_RANGES)
  --job-bookmark-option         Glue's own: the S3 source below has a transformation_ctx, so enable/pause
                                read only objects not yet bookmarked and job.commit() moves the bookmark.

Each line is one record. The row rules (what is rejected and why, typing, UTC timestamps, the date partition,
which duplicate is kept) are the plain-Python functions at the top of this module: Spark applies exactly
them to every line, and they are unit-tested against the local job without Spark. transform() is the whole
Spark part (raw lines -> curated and reject DataFrames); main() wraps it in Glue (GlueContext, the bookmarked
source, the writes, job.commit()). pyspark is imported inside functions and awsglue only in main(), so the
module imports anywhere; tests/test_glue_spark.py runs transform() on a local Spark against the local job.

Output: curated/telemetry/date=YYYY-MM-DD/ Parquet (snappy, TIMESTAMP_MICROS in UTC), one file per date per
run; message ids already curated in those dates are dropped, so a rerun after a failed run adds no
duplicates. Rejects go to errors/etl-failed/glue-run=<run id>/ as {"reason", "raw_key", "record"} lines
(unparsable lines keep their text; Spark gives no line numbers). Glue reports no row counts, so the job
writes state/glue-etl/runs/<run id>.json with them for the backend to read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyspark is only needed where Spark runs
    from pyspark.rdd import RDD
    from pyspark.sql import DataFrame, SparkSession

STRING_FIELDS = ("message_id", "device_id", "timestamp")
FIXED_FIELDS = (*STRING_FIELDS, "received_at")
CURATED_PREFIX = "curated/telemetry/"
ERRORS_PREFIX = "errors/etl-failed/"
SUMMARY_PREFIX = "state/glue-etl/runs/"
# The raw objects are read as one-column text: JSON text never holds an unescaped control character.
LINE_SEPARATOR = "\x1f"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A URI's scheme and the slashes after it: s3://b/k, s3a://b/k, file:///d/k and file:/d/k compare alike.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/*")


def is_number(value: Any) -> bool:
    """Return whether a JSON value is a number (true/false are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_line(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Return (record, None) for a JSON object line, (None, reason) otherwise, (None, None) for a blank line."""
    if not text.strip():
        return None, None
    try:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return None, f"unparsable JSON line: {exc}"
    return record, None


def numeric_fields(record: dict[str, Any]) -> set[str]:
    """Return the record's numeric fields that can be curated columns (metrics, location, new ones)."""
    return {
        name
        for name, value in record.items()
        if name not in FIXED_FIELDS and is_number(value) and _IDENTIFIER.match(name)
    }


def order_columns(known: Iterable[str], found: Iterable[str]) -> list[str]:
    """Return the known numeric columns in their order, then the newly found ones sorted."""
    known = list(known)
    return known + sorted(set(found) - set(known))


def parse_timestamp(value: Any) -> datetime | None:
    """Return an ISO 8601 timestamp as an aware UTC datetime (no offset means UTC); None when unparsable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def reject_reason(record: dict[str, Any], numeric: list[str], ranges: dict[str, list[float]]) -> str | None:
    """Return why the record cannot be curated (the local job's wording), None when it can."""
    if record.get("message_id") is None:
        return "missing message_id"
    if record.get("device_id") is None:
        return "missing device_id"
    if parse_timestamp(record.get("timestamp")) is None:
        return "unparsable timestamp"
    for name in numeric:
        value = record.get(name)
        if value is not None and not is_number(value):
            return f"{name} is not a number: {json.dumps(value, separators=(',', ':'))}"
    for name, (low, high) in sorted(ranges.items()):
        value = record.get(name)
        if is_number(value) and not float(low) <= float(value) <= float(high):
            return f"{name} outside its physical range [{low:g}, {high:g}]: {float(value)}"
    return None


def curate(record: dict[str, Any], numeric: list[str]) -> dict[str, Any]:
    """Return the curated row of a valid record: typed, UTC timestamps, metrics as floats, date last."""
    moment = parse_timestamp(record["timestamp"])
    received = record.get("received_at")
    row = {
        "message_id": str(record["message_id"]),
        "device_id": str(record["device_id"]),
        "timestamp": moment,
        "received_at": datetime.fromtimestamp(received / 1000.0, UTC) if is_number(received) else None,
    }
    row.update({name: float(record[name]) if is_number(record.get(name)) else None for name in numeric})
    row["date"] = moment.date().isoformat()
    return row


def classify_line(
    raw_key: str, text: str, numeric: list[str], ranges: dict[str, list[float]]
) -> tuple[str, dict[str, Any]] | None:
    """Return ("good", curated row) or ("reject", error line dict) for one raw line; None for a blank line."""
    record, broken = parse_line(text)
    if broken:
        return "reject", {"reason": broken, "raw_key": raw_key, "record": text}
    if record is None:
        return None
    reason = reject_reason(record, numeric, ranges)
    if reason:
        return "reject", {"reason": reason, "raw_key": raw_key, "record": record}
    return "good", curate(record, numeric)


def keep_first_arrival(
    rows: Iterable[dict[str, Any]], curated_ids: set[str] | frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Return one row per message_id not in curated_ids: the earliest received_at (missing counts as last)."""
    best: dict[str, dict[str, Any]] = {}
    last = datetime.max.replace(tzinfo=UTC)
    for row in rows:
        if row["message_id"] in curated_ids:
            continue
        kept = best.get(row["message_id"])
        if kept is None or (row["received_at"] or last) < (kept["received_at"] or last):
            best[row["message_id"]] = row
    return list(best.values())


def curated_columns(numeric: list[str]) -> list[tuple[str, str]]:
    """Return the curated table's (column, Hive type) pairs, partition column `date` last (the local schema)."""
    fixed = [
        ("message_id", "string"),
        ("device_id", "string"),
        ("timestamp", "timestamp"),
        ("received_at", "timestamp"),
    ]
    return [*fixed, *((name, "double") for name in numeric), ("date", "string")]


def lake_key(uri: str, lake: str) -> str:
    """Return the lake key of an object URI Spark reports (s3://, s3a:// or file:/), given the lake root URI."""
    root = _SCHEME.sub("", lake.rstrip("/")) + "/"
    path = _SCHEME.sub("", uri)
    return path[len(root) :] if path.startswith(root) else uri


def job_settings(args: dict[str, str]) -> tuple[str, list[str], dict[str, list[float]]]:
    """Return (lake root, known numeric columns, ranges) from the job's resolved arguments."""
    metrics = [name for name in args["metrics"].split(",") if name]
    ranges = {name: [float(low), float(high)] for name, (low, high) in json.loads(args["ranges"]).items()}
    return args["lake"].rstrip("/"), metrics, ranges


def configure_session(spark: SparkSession) -> None:
    """Set the session as the local job writes: UTC everywhere, TIMESTAMP_MICROS, `date` partitions as strings."""
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")


@dataclass
class Curated:
    """The transformation's result: the curated columns, the good rows before and after dedupe, the rejects."""

    numeric: list[str]
    lines: RDD  # (lake key, line text) per raw line, cached
    good: DataFrame  # every valid row, typed (curated_columns(numeric))
    deduped: DataFrame  # one row per message_id: the earliest received_at
    rejects: DataFrame  # one `value` column: the error line JSON ({"reason", "raw_key", "record"})


def read_raw(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Return the raw objects under paths as one `value` text column (no partition columns): main() reads
    through Glue instead, for its bookmark."""
    return spark.read.option("recursiveFileLookup", "true").text(paths)


def transform(spark: SparkSession, source: DataFrame, lake: str, known: list[str], ranges: dict) -> Curated:
    """Curate the raw lines of source (string columns, joined back on LINE_SEPARATOR) with the row rules above.

    lake is the root URI the raw objects' keys are relative to; known the numeric columns in their order.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F  # noqa: N812 - PySpark's own idiom
    from pyspark.sql import types as T  # noqa: N812

    text = F.concat_ws(LINE_SEPARATOR, *[F.col(c) for c in source.columns]) if source.columns else F.lit("")
    lines = (
        source.select(F.input_file_name().alias("uri"), text.alias("text"))
        .rdd.map(lambda r: (lake_key(r[0], lake), r[1] or ""))
        .cache()
    )
    found = lines.flatMap(lambda r: numeric_fields(parse_line(r[1])[0] or {})).distinct().collect()
    numeric = order_columns(known, found)
    classified = lines.map(lambda r: classify_line(r[0], r[1], numeric, ranges)).filter(bool).cache()

    hive = {"string": T.StringType(), "timestamp": T.TimestampType(), "double": T.DoubleType()}
    schema = T.StructType([T.StructField(name, hive[kind]) for name, kind in curated_columns(numeric)])
    names = [name for name, _ in curated_columns(numeric)]
    good = spark.createDataFrame(
        classified.filter(lambda c: c[0] == "good").map(lambda c: [c[1][n] for n in names]), schema
    )
    first = Window.partitionBy("message_id").orderBy(F.col("received_at").asc_nulls_last())
    deduped = good.withColumn("_rn", F.row_number().over(first)).where("_rn = 1").drop("_rn")
    rejects = classified.filter(lambda c: c[0] == "reject").map(lambda c: (json.dumps(c[1], default=str),))
    return Curated(numeric, lines, good, deduped, spark.createDataFrame(rejects, "value string"))


def drop_curated(spark: SparkSession, deduped: DataFrame, lake: str) -> DataFrame:
    """Return deduped without the message ids already curated in its dates (a rerun adds no duplicates)."""
    from pyspark.sql import functions as F  # noqa: N812
    from pyspark.sql.utils import AnalysisException

    dates = [row[0] for row in deduped.select("date").distinct().collect()]
    try:
        existing = spark.read.parquet(f"{lake}/{CURATED_PREFIX}").where(F.col("date").isin(dates)).select("message_id")
    except AnalysisException:  # no curated data yet
        return deduped
    return deduped.join(existing, "message_id", "left_anti")


def main() -> None:  # pragma: no cover - runs inside AWS Glue only (awsglue is not installed here)
    """Run the job: read new raw objects (bookmarked), curate, dedupe, write Parquet, errors and the summary."""
    import sys

    import boto3
    from awsglue.context import GlueContext
    from awsglue.job import Job
    from awsglue.utils import getResolvedOptions
    from pyspark.context import SparkContext

    args = getResolvedOptions(sys.argv, ["JOB_NAME", "JOB_RUN_ID", "lake", "metrics", "ranges"])
    lake, known, ranges = job_settings(args)
    glue = GlueContext(SparkContext.getOrCreate())
    spark = glue.spark_session
    configure_session(spark)
    job = Job(glue)
    job.init(args["JOB_NAME"], args)

    # The bookmark works on this source: transformation_ctx names it in the job's bookmark state.
    source = glue.create_dynamic_frame.from_options(
        connection_type="s3",
        connection_options={"paths": [f"{lake}/raw/"], "recurse": True, "groupFiles": "inPartition"},
        format="csv",
        format_options={"separator": LINE_SEPARATOR, "quoteChar": -1, "withHeader": False},
        transformation_ctx="raw_telemetry",
    ).toDF()
    curated = transform(spark, source, lake, known, ranges)
    names = [name for name, _ in curated_columns(curated.numeric)]
    fresh = drop_curated(spark, curated.deduped, lake).select(*names).cache()
    written = fresh.count()
    # One file per date per run: the partition does not collect a file per raw object.
    fresh.repartition("date").sortWithinPartitions("device_id", "timestamp").write.mode("append").partitionBy(
        "date"
    ).option("compression", "snappy").parquet(f"{lake}/{CURATED_PREFIX}")

    rejected = curated.rejects.count()
    if rejected:
        curated.rejects.coalesce(1).write.mode("overwrite").text(
            f"{lake}/{ERRORS_PREFIX}glue-run={args['JOB_RUN_ID']}/"
        )
    good_rows = curated.good.count()
    written_dates = sorted(row[0] for row in fresh.select("date").distinct().collect())
    summary = {
        "objects_processed": curated.lines.map(lambda r: r[0]).distinct().count(),
        "rows_read": good_rows + rejected,
        "rows_written": written,
        "duplicates_dropped": good_rows - written,
        "rows_rejected": rejected,
        "partitions_written": written_dates,
        "numeric": curated.numeric,
    }
    bucket, _, prefix = lake.split("://", 1)[1].partition("/")
    key = f"{prefix + '/' if prefix else ''}{SUMMARY_PREFIX}{args['JOB_RUN_ID']}.json"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(summary).encode())
    job.commit()


if __name__ == "__main__":  # pragma: no cover
    main()
