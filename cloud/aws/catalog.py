"""aws catalog backend: a Glue crawler over the lake's raw/ prefix, its table read back from the Data Catalog.

The crawler is created (or updated when its settings changed) with one S3 target, the lake's raw/ prefix,
and the table prefix `telemetry_`: Glue names the table after the target folder, so it is
`telemetry_raw`, as the local crawler's. The Hive folders year=/month=/day=/hour= become string
partition keys. Each run's CrawlPolicy becomes the crawler's SchemaChangePolicy and RecrawlPolicy, except
that Glue refuses CRAWL_NEW_FOLDERS_ONLY unless both behaviors are LOG: such a run sends LOG/LOG, and the
project's catalog (the crawl service) still applies the run's behaviors to what the crawl returns.

The schema returned is Glue's table (columns merged over every partition); partition_columns holds each
partition's own columns from get_partitions (with CRAWL_NEW_FOLDERS_ONLY only the partitions not in
`crawled`), which is where a type conflict between partitions shows. Glue does not report how many
objects a crawl read, so objects_scanned is 0.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cloud.aws.clients import aws_call, lake_s3_uri, poll_until
from cloud.interfaces import (
    DELETE_BEHAVIORS,
    RECRAWL_POLICIES,
    UPDATE_BEHAVIORS,
    BackendError,
    Column,
    Crawler,
    CrawlPolicy,
    Lake,
    Progress,
    TableSchema,
    no_progress,
)
from cloud.local.catalog import curated_table
from cloud.local.duckdb_telemetry import CURATED_PREFIX

RAW_PREFIX = "raw/"
# The curated table as Athena reads Parquet (the Glue console's "Parquet" table template).
PARQUET_FORMAT = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
PARTITION_BATCH = 100  # batch_create_partition takes at most 100 partitions per call
_MISSING = ("EntityNotFoundException",)
# Partitions take the table's schema (no per-folder schema drift) and compatible files make one table,
# never one table per hour folder.
CRAWLER_CONFIGURATION = json.dumps(
    {
        "Version": 1.0,
        "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
        "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"},
    },
    separators=(",", ":"),
)


class GlueCrawler(Crawler):
    """Runs the Glue crawler `crawler_name` into `database` and returns the table it maintains.

    role_arn: the crawler's IAM role (default: IOTCAST_GLUE_ROLE_ARN). poll_s / timeout_s: how often and how
    long to wait for the crawl.
    """

    def __init__(
        self, region: str = "us-east-1", database: str = "iotcast", crawler_name: str = "iotcast-raw",
        table_prefix: str = "telemetry_", role_arn: str | None = None, poll_s: float = 15.0,
        timeout_s: float = 3600.0,
    ) -> None:  # fmt: skip
        self.region, self.database, self.crawler_name, self.table_prefix = region, database, crawler_name, table_prefix
        self.role_arn = role_arn or os.environ.get("IOTCAST_GLUE_ROLE_ARN", "")
        self.poll_s, self.timeout_s = poll_s, timeout_s
        self._glue = boto3.client("glue", region_name=region)

    @property
    def table_name(self) -> str:
        """Return the table Glue names after the raw/ target folder."""
        return f"{self.table_prefix}{RAW_PREFIX.strip('/')}"

    def crawler_request(self, lake: Lake, policy: CrawlPolicy | None = None) -> dict[str, Any]:
        """Return the create_crawler / update_crawler arguments for the lake and the run's policy.

        Raises ValueError for a policy value that is not Glue's.
        """
        update, delete, recrawl = glue_policy(policy or CrawlPolicy())
        if not self.role_arn:
            raise BackendError("set IOTCAST_GLUE_ROLE_ARN (or the role_arn option) to the Glue crawler's IAM role")
        return {
            "Name": self.crawler_name,
            "Role": self.role_arn,
            "DatabaseName": self.database,
            "Description": "IoTCast raw telemetry (newline-delimited JSON, Hive partitions year/month/day/hour)",
            "Targets": {"S3Targets": [{"Path": lake_s3_uri(lake, RAW_PREFIX)}]},
            "TablePrefix": self.table_prefix,
            "SchemaChangePolicy": {"UpdateBehavior": update, "DeleteBehavior": delete},
            "RecrawlPolicy": {"RecrawlBehavior": recrawl},
            "Configuration": CRAWLER_CONFIGURATION,
        }

    def crawl(
        self,
        lake: Lake,
        progress: Progress = no_progress,
        policy: CrawlPolicy | None = None,
        crawled: list[dict[str, str]] | None = None,
    ) -> TableSchema:
        """Run the crawler with the policy to its end and return the table's schema and partitions.

        crawled lists the partitions the project's catalog already holds (skipped by CRAWL_NEW_FOLDERS_ONLY,
        as Glue's own crawler does). Raises ValueError for a policy value that is not Glue's, BackendError
        when the crawl fails, times out or produced no table, BackendUnavailable when Glue cannot be reached.
        """
        policy = policy or CrawlPolicy()
        request = self.crawler_request(lake, policy)
        self.ensure_database()
        self.ensure_crawler(request)
        progress(5, f"starting Glue crawler {self.crawler_name}")
        self._start()
        crawler = self._wait(progress)
        last = crawler.get("LastCrawl", {})
        if last.get("Status") in ("FAILED", "CANCELLED"):
            reason = last.get("ErrorMessage") or "no reason given"
            raise BackendError(f"Glue crawler {self.crawler_name} {last['Status'].lower()}: {reason}")
        progress(90, f"reading table {self.database}.{self.table_name}")
        new_only = policy.recrawl_policy == "CRAWL_NEW_FOLDERS_ONLY"
        return self.table_schema((crawled or []) if new_only else [])

    def register_curated(self, lake: Lake, progress: Progress = no_progress) -> TableSchema:
        """Create or update the Glue table `telemetry` over curated/ and add its new date partitions.

        This is what a Glue job writing with enableUpdateCatalog does: no crawler run (the job knows the
        schema), columns from the Parquet footers, one partition per date folder (batch_create_partition,
        100 at a time). Raises BackendError when Glue refuses a call or names partitions it could not add.
        """
        schema = curated_table(lake, self.database)
        schema.location = lake_s3_uri(lake, CURATED_PREFIX)
        self.ensure_database()
        progress(97, f"updating table {self.database}.{schema.name} in the Glue Data Catalog")
        table_input = self.curated_table_input(schema)
        found = aws_call(self._glue, "get_table", ok_codes=_MISSING, DatabaseName=self.database, Name=schema.name)
        if found is not None:
            # Keep what others set on the table (the Athena backend's partition projection properties).
            table_input["Parameters"] = {**found["Table"].get("Parameters", {}), **table_input["Parameters"]}
        operation = "create_table" if found is None else "update_table"
        aws_call(self._glue, operation, DatabaseName=self.database, TableInput=table_input)
        self._add_partitions(schema, table_input["StorageDescriptor"])
        return schema

    @staticmethod
    def curated_table_input(schema: TableSchema) -> dict[str, Any]:
        """Return the TableInput of the curated Parquet table (an EXTERNAL_TABLE, classification parquet)."""
        return {
            "Name": schema.name,
            "Description": "IoTCast curated telemetry (Parquet, partitioned by date), written by the ETL job",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
            "PartitionKeys": [{"Name": c.name, "Type": c.type} for c in schema.partition_keys],
            "StorageDescriptor": {
                "Columns": [{"Name": c.name, "Type": c.type} for c in schema.columns],
                "Location": schema.location,
                **PARQUET_FORMAT,
            },
        }

    def _add_partitions(self, schema: TableSchema, storage: dict[str, Any]) -> None:
        """Add the schema's partitions Glue does not hold yet; raise BackendError naming any it refused."""
        key = schema.partition_keys[0].name
        known = {values[key] for values, _ in self.partitions([key], schema.name)}
        new = [values[key] for values in schema.partitions if values[key] not in known]
        for start in range(0, len(new), PARTITION_BATCH):
            inputs = [
                {"Values": [value], "StorageDescriptor": {**storage, "Location": f"{schema.location}{key}={value}/"}}
                for value in new[start : start + PARTITION_BATCH]
            ]
            answer = aws_call(
                self._glue, "batch_create_partition", DatabaseName=self.database, TableName=schema.name,
                PartitionInputList=inputs,
            )  # fmt: skip
            errors = [e for e in answer.get("Errors", []) if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"]
            if errors:
                raise BackendError(f"glue batch_create_partition refused {len(errors)} partition(s): {errors[0]}")

    def ensure_database(self) -> None:
        """Create the crawler's database unless it exists."""
        if aws_call(self._glue, "get_database", ok_codes=_MISSING, Name=self.database) is None:
            description = "IoTCast data lake: raw and curated telemetry"
            aws_call(self._glue, "create_database", DatabaseInput={"Name": self.database, "Description": description})

    def ensure_crawler(self, request: dict[str, Any]) -> None:
        """Create the crawler, or update it when its stored settings differ from request."""
        found = aws_call(self._glue, "get_crawler", ok_codes=_MISSING, Name=self.crawler_name)
        if found is None:
            aws_call(self._glue, "create_crawler", **request)
            return
        current = found["Crawler"]
        if any(current.get(name) != value for name, value in request.items() if name != "Description"):
            aws_call(self._glue, "update_crawler", **request)

    def _start(self) -> None:
        # A scheduled run already crawling is no failure: the wait below waits for that one.
        aws_call(self._glue, "start_crawler", ok_codes=("CrawlerRunningException",), Name=self.crawler_name)

    def _wait(self, progress: Progress) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            crawler = aws_call(self._glue, "get_crawler", Name=self.crawler_name)["Crawler"]
            progress(10 if crawler["State"] == "RUNNING" else 80, f"Glue crawler {crawler['State'].lower()}")
            return crawler

        what = f"Glue crawler {self.crawler_name}"
        return poll_until(read, lambda crawler: crawler["State"] == "READY", self.poll_s, self.timeout_s, what)

    def table_schema(self, skip_columns_of: list[dict[str, str]] | None = None) -> TableSchema:
        """Return the crawled table from the Data Catalog with all its partitions.

        partition_columns describes every partition but those in skip_columns_of.
        """
        found = aws_call(self._glue, "get_table", ok_codes=_MISSING, DatabaseName=self.database, Name=self.table_name)
        if found is None:
            raise BackendError(
                f"the crawl made no table {self.database}.{self.table_name}: is the lake's raw/ prefix empty?"
            )
        table = found["Table"]
        storage = table.get("StorageDescriptor", {})
        keys = [Column(c["Name"], c["Type"]) for c in table.get("PartitionKeys", [])]
        partitions = self.partitions([key.name for key in keys])
        skip = {_path(values, keys) for values in skip_columns_of or []}
        return TableSchema(
            database=self.database,
            name=self.table_name,
            location=storage.get("Location", ""),
            columns=[Column(c["Name"], c["Type"]) for c in storage.get("Columns", [])],
            partition_keys=keys,
            partitions=[values for values, _ in partitions],
            classification=table.get("Parameters", {}).get("classification", "json"),
            partition_columns={
                _path(values, keys): columns for values, columns in partitions if _path(values, keys) not in skip
            },
        )

    def partitions(
        self, key_names: list[str], table_name: str | None = None
    ) -> list[tuple[dict[str, str], dict[str, str]]]:
        """Return every partition of table_name (default: the raw table) as ({key: value}, {column: type}),
        sorted by value (get_partitions, all pages).
        """
        found = []
        paginator = self._glue.get_paginator("get_partitions")
        try:
            for page in paginator.paginate(DatabaseName=self.database, TableName=table_name or self.table_name):
                for partition in page.get("Partitions", []):
                    columns = partition.get("StorageDescriptor", {}).get("Columns", [])
                    values = dict(zip(key_names, partition["Values"], strict=True))
                    found.append((values, {c["Name"]: c["Type"] for c in columns}))
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"glue get_partitions failed: {exc}") from exc
        return sorted(found, key=lambda item: [item[0][name] for name in key_names])


def glue_policy(policy: CrawlPolicy) -> tuple[str, str, str]:
    """Return (UpdateBehavior, DeleteBehavior, RecrawlBehavior) to send Glue for a run's policy.

    Glue accepts CRAWL_NEW_FOLDERS_ONLY only with both behaviors LOG. Raises ValueError for unknown values.
    """
    for value, allowed in ((policy.update_behavior, UPDATE_BEHAVIORS), (policy.delete_behavior, DELETE_BEHAVIORS),
                           (policy.recrawl_policy, RECRAWL_POLICIES)):  # fmt: skip
        if value not in allowed:
            raise ValueError(f"unknown crawler policy value {value!r}; use one of {', '.join(allowed)}")
    if policy.recrawl_policy == "CRAWL_NEW_FOLDERS_ONLY":
        return "LOG", "LOG", policy.recrawl_policy
    return policy.update_behavior, policy.delete_behavior, policy.recrawl_policy


def _path(values: dict[str, str], keys: list[Column]) -> str:
    """Return a partition's Hive path, e.g. year=2026/month=11/day=27/hour=21."""
    return "/".join(f"{key.name}={values[key.name]}" for key in keys if values.get(key.name))
