"""The aws catalog, ETL and query backends: the exact Glue and Athena calls, against moto (state it records)
and botocore's Stubber (answers moto cannot give: query rows, failures, update/reset calls moto lacks).

The Glue job script's row rules are checked against the local DuckDB job on the same raw input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.moto_api import state_manager

from cloud.aws.catalog import CRAWLER_CONFIGURATION, GlueCrawler
from cloud.aws.etl import SCRIPT_KEY, SCRIPT_PATH, GlueEtlJob
from cloud.aws.glue import telemetry_etl as script
from cloud.aws.query import AthenaQuery, convert, sql_literal
from cloud.interfaces import BackendError, CrawlPolicy, QueryTimeout
from cloud.lake import FolderLake, S3Lake
from cloud.local.duckdb_telemetry import DEFAULT_METRICS, LOCATION_COLUMNS, curated_schema
from cloud.local.etl import DEFAULT_RANGES, DuckDBEtlJob
from cloud.local.query import QueryRejected
from tests.telemetry_helpers import iso, put_raw, reading

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/iotcast-glue"
LAKE_URL = "s3://iotcast-lake/prod"
EVERYTHING = CrawlPolicy("UPDATE_IN_DATABASE", "DEPRECATE_IN_DATABASE", "CRAWL_EVERYTHING")
NEW_FOLDERS = CrawlPolicy("UPDATE_IN_DATABASE", "DEPRECATE_IN_DATABASE", "CRAWL_NEW_FOLDERS_ONLY")


@pytest.fixture
def aws(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="iotcast-lake")
        yield boto3.client("glue", region_name=REGION)


@pytest.fixture
def crawls_finish():
    # moto's crawl stays RUNNING until told otherwise; a real crawl ends.
    state_manager.set_transition(model_name="glue::crawl", transition={"progression": "immediate"})
    yield
    state_manager.unset_transition("glue::crawl")


def _raw_table(glue, columns: dict[str, str]) -> None:
    """Create what a Glue crawl of raw/ leaves behind (moto runs no crawler): the table and its partitions."""
    glue.create_database(DatabaseInput={"Name": "iotcast"})
    keys = [{"Name": name, "Type": "string"} for name in ("year", "month", "day", "hour")]
    storage = {"Columns": [{"Name": n, "Type": t} for n, t in columns.items()],
               "Location": f"{LAKE_URL}/raw/"}  # fmt: skip
    glue.create_table(
        DatabaseName="iotcast",
        TableInput={"Name": "telemetry_raw", "StorageDescriptor": storage, "PartitionKeys": keys,
                    "Parameters": {"classification": "json"}},
    )  # fmt: skip
    for hour, extra in (("22", {"humidity": "double"}), ("21", {})):
        part = {**storage, "Columns": storage["Columns"] + [{"Name": n, "Type": t} for n, t in extra.items()]}
        glue.create_partition(
            DatabaseName="iotcast",
            TableName="telemetry_raw",
            PartitionInput={"Values": ["2026", "11", "27", hour], "StorageDescriptor": part},
        )


# --- crawler ----------------------------------------------------------------------------------------------
def test_a_crawl_creates_the_database_and_a_crawler_on_raw_and_reads_back_the_table(aws, crawls_finish):
    _raw_table(aws, {"message_id": "string", "ozone": "double", "device_id": "string"})
    reports = []
    schema = GlueCrawler(region=REGION, role_arn=ROLE, poll_s=0).crawl(
        S3Lake(LAKE_URL), lambda pct, msg: reports.append(msg), EVERYTHING
    )
    crawler = aws.get_crawler(Name="iotcast-raw")["Crawler"]
    assert crawler["Targets"]["S3Targets"] == [{"Path": "s3://iotcast-lake/prod/raw/"}]
    assert crawler["Role"] == ROLE and crawler["DatabaseName"] == "iotcast" and crawler["TablePrefix"] == "telemetry_"
    assert crawler["SchemaChangePolicy"] == {"UpdateBehavior": "UPDATE_IN_DATABASE",
                                             "DeleteBehavior": "DEPRECATE_IN_DATABASE"}  # fmt: skip
    assert crawler["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_EVERYTHING"}
    assert (
        json.loads(crawler["Configuration"])["CrawlerOutput"]["Partitions"]["AddOrUpdateBehavior"] == "InheritFromTable"
    )
    assert crawler["State"] == "READY" and "StartTime" in crawler["LastCrawl"]
    assert [c.name for c in schema.columns] == ["message_id", "ozone", "device_id"]
    assert [(c.name, c.type) for c in schema.partition_keys[:2]] == [("year", "string"), ("month", "string")]
    assert (schema.database, schema.name, schema.location) == ("iotcast", "telemetry_raw", f"{LAKE_URL}/raw/")
    assert schema.classification == "json"
    # Partitions come back sorted, each with its own columns (where a type conflict between them shows).
    assert [p["hour"] for p in schema.partitions] == ["21", "22"]
    assert schema.partition_columns["year=2026/month=11/day=27/hour=22"]["humidity"] == "double"
    assert "humidity" not in schema.partition_columns["year=2026/month=11/day=27/hour=21"]
    assert reports[0] == "starting Glue crawler iotcast-raw" and "Glue crawler ready" in reports


def test_new_folders_only_sends_log_behaviors_as_glue_requires_and_describes_only_new_partitions(aws, crawls_finish):
    crawler = GlueCrawler(region=REGION, role_arn=ROLE, poll_s=0)
    request = crawler.crawler_request(S3Lake(LAKE_URL), NEW_FOLDERS)
    assert request["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}
    assert request["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    _raw_table(aws, {"message_id": "string", "ozone": "double"})
    known = [{"year": "2026", "month": "11", "day": "27", "hour": "21"}]
    schema = crawler.crawl(S3Lake(LAKE_URL), policy=NEW_FOLDERS, crawled=known)
    assert (
        aws.get_crawler(Name="iotcast-raw")["Crawler"]["RecrawlPolicy"]["RecrawlBehavior"] == "CRAWL_NEW_FOLDERS_ONLY"
    )
    assert len(schema.partitions) == 2 and list(schema.partition_columns) == ["year=2026/month=11/day=27/hour=22"]


def test_a_changed_policy_updates_the_existing_crawler_and_an_unchanged_one_does_not(aws):
    crawler = GlueCrawler(region=REGION, role_arn=ROLE)
    lake = S3Lake(LAKE_URL)
    stored = {**crawler.crawler_request(lake, EVERYTHING), "State": "READY"}
    wanted = crawler.crawler_request(lake, NEW_FOLDERS)
    with Stubber(crawler._glue) as stub:
        stub.add_response("get_crawler", {"Crawler": stored}, {"Name": "iotcast-raw"})
        stub.add_response("update_crawler", {}, wanted)
        crawler.ensure_crawler(wanted)
        stub.add_response("get_crawler", {"Crawler": stored}, {"Name": "iotcast-raw"})
        crawler.ensure_crawler(crawler.crawler_request(lake, EVERYTHING))  # no update_crawler expected
        stub.assert_no_pending_responses()


def test_a_failed_crawl_says_why_and_a_crawl_that_never_ends_times_out(aws):
    crawler = GlueCrawler(region=REGION, role_arn=ROLE, poll_s=0, timeout_s=0)
    with Stubber(crawler._glue) as stub:
        stub.add_response("get_database", {"Database": {"Name": "iotcast"}}, {"Name": "iotcast"})
        stub.add_response("get_crawler", {"Crawler": crawler.crawler_request(S3Lake(LAKE_URL), EVERYTHING)})
        stub.add_client_error("start_crawler", "CrawlerRunningException")  # a scheduled crawl: wait for it
        last = {"Status": "FAILED", "ErrorMessage": "Internal Service Exception"}
        stub.add_response("get_crawler", {"Crawler": {"Name": "iotcast-raw", "State": "READY", "LastCrawl": last}})
        with pytest.raises(BackendError, match="iotcast-raw failed: Internal Service Exception"):
            crawler.crawl(S3Lake(LAKE_URL), policy=EVERYTHING)
        stub.assert_no_pending_responses()
    # moto's crawl keeps running: the wait gives up and says the crawl may still be running.
    with pytest.raises(BackendError, match="did not finish within 0 s; it may still be running"):
        crawler.crawl(S3Lake(LAKE_URL), policy=EVERYTHING)


def test_crawler_configuration_errors_are_clear(aws, monkeypatch):
    monkeypatch.delenv("IOTCAST_GLUE_ROLE_ARN", raising=False)
    with pytest.raises(BackendError, match="IOTCAST_GLUE_ROLE_ARN"):
        GlueCrawler(region=REGION).crawl(S3Lake(LAKE_URL))
    with pytest.raises(ValueError, match="unknown crawler policy value 'SOMETIMES'"):
        GlueCrawler(region=REGION, role_arn=ROLE).crawl(
            S3Lake(LAKE_URL), policy=CrawlPolicy(recrawl_policy="SOMETIMES")
        )
    with pytest.raises(BackendError, match="s3:// lake"):
        GlueCrawler(region=REGION, role_arn=ROLE).crawl(FolderLake("file:///tmp/iotcast-not-s3"))
    assert json.loads(CRAWLER_CONFIGURATION)["Grouping"]["TableGroupingPolicy"] == "CombineCompatibleSchemas"


# --- ETL job ----------------------------------------------------------------------------------------------
def test_a_run_uploads_the_script_defines_the_job_and_starts_it_with_the_bookmark_option(aws):
    lake = S3Lake(LAKE_URL)
    job = GlueEtlJob(region=REGION, role_arn=ROLE, poll_s=0)
    result = job.run(lake, bookmark_option="job-bookmark-pause")
    assert lake.get_bytes(SCRIPT_KEY) == SCRIPT_PATH.read_bytes()
    stored = aws.get_job(JobName="iotcast-telemetry-etl")["Job"]
    assert stored["Command"] == {"Name": "glueetl", "ScriptLocation": f"{LAKE_URL}/{SCRIPT_KEY}", "PythonVersion": "3"}
    assert stored["GlueVersion"] == "4.0" and stored["Role"] == ROLE
    assert stored["ExecutionProperty"] == {"MaxConcurrentRuns": 1}
    arguments = stored["DefaultArguments"]
    assert arguments["--job-bookmark-option"] == "job-bookmark-enable"
    assert arguments["--lake"] == LAKE_URL and arguments["--TempDir"] == f"{LAKE_URL}/tmp/glue/"
    # The ranges and columns are the local job's own definitions.
    assert json.loads(arguments["--ranges"]) == DEFAULT_RANGES
    assert arguments["--metrics"].split(",") == [*DEFAULT_METRICS, *LOCATION_COLUMNS]
    runs = aws.get_job_runs(JobName="iotcast-telemetry-etl")["JobRuns"]
    assert [run["Arguments"]["--job-bookmark-option"] for run in runs] == ["job-bookmark-pause"]
    assert result.rows_written == 0  # moto's run writes no summary: Glue itself reports no counts
    # The same definition again: no update_job (moto has none, so a call would fail), one more run.
    job.run(lake)
    runs = aws.get_job_runs(JobName="iotcast-telemetry-etl")["JobRuns"]
    assert sorted(run["Arguments"]["--job-bookmark-option"] for run in runs) == [
        "job-bookmark-enable",
        "job-bookmark-pause",
    ]


def test_the_result_comes_from_the_summary_the_script_writes(aws):
    lake = S3Lake(LAKE_URL)
    summary = {"objects_processed": 3, "rows_read": 10, "rows_written": 7, "duplicates_dropped": 1,
               "rows_rejected": 2, "partitions_written": ["2026-11-28", "2026-11-27"]}  # fmt: skip
    lake.put_bytes(f"{script.SUMMARY_PREFIX}jr_abc.json", json.dumps(summary).encode())
    result = GlueEtlJob.run_result(lake, "jr_abc")
    assert (result.objects_processed, result.rows_read, result.rows_written) == (3, 10, 7)
    assert (result.duplicates_dropped, result.rows_rejected) == (1, 2)
    assert result.partitions_written == ["2026-11-27", "2026-11-28"]


def test_a_failed_run_raises_glues_error_message_and_updates_a_changed_job(aws):
    lake = S3Lake(LAKE_URL)
    job = GlueEtlJob(region=REGION, role_arn=ROLE, poll_s=0, number_of_workers=10)
    old = {**GlueEtlJob(region=REGION, role_arn=ROLE).job_definition(lake), "Name": "iotcast-telemetry-etl"}
    run = {"Id": "jr_1", "JobName": "iotcast-telemetry-etl"}
    with Stubber(job._glue) as stub:
        stub.add_response("get_job", {"Job": old}, {"JobName": "iotcast-telemetry-etl"})
        stub.add_response(
            "update_job", {"JobName": "iotcast-telemetry-etl"},
            {"JobName": "iotcast-telemetry-etl", "JobUpdate": job.job_definition(lake)},
        )  # fmt: skip
        stub.add_response(
            "start_job_run", {"JobRunId": "jr_1"},
            {"JobName": "iotcast-telemetry-etl", "Arguments": {"--job-bookmark-option": "job-bookmark-disable"}},
        )  # fmt: skip
        stub.add_response("get_job_run", {"JobRun": {**run, "JobRunState": "RUNNING"}})
        message = "AnalysisException: Path does not exist: s3://iotcast-lake/prod/raw"
        stub.add_response("get_job_run", {"JobRun": {**run, "JobRunState": "FAILED", "ErrorMessage": message}})
        with pytest.raises(BackendError, match="run jr_1 failed: AnalysisException: Path does not exist"):
            job.run(lake, bookmark_option="job-bookmark-disable")
        stub.assert_no_pending_responses()


def test_reset_bookmark_calls_reset_job_bookmark_and_a_job_never_run_has_none(aws):
    job = GlueEtlJob(region=REGION, role_arn=ROLE)
    with Stubber(job._glue) as stub:
        stub.add_response("reset_job_bookmark", {"JobBookmarkEntry": {"JobName": "iotcast-telemetry-etl"}},
                          {"JobName": "iotcast-telemetry-etl"})  # fmt: skip
        stub.add_client_error("reset_job_bookmark", "EntityNotFoundException")
        job.reset_bookmark(S3Lake(LAKE_URL))
        job.reset_bookmark(S3Lake(LAKE_URL))
        stub.add_client_error("reset_job_bookmark", "AccessDeniedException", "not allowed")
        with pytest.raises(BackendError, match="reset_job_bookmark failed: AccessDeniedException not allowed"):
            job.reset_bookmark(S3Lake(LAKE_URL))
        stub.assert_no_pending_responses()


def test_a_bad_bookmark_option_is_refused_before_any_call(aws):
    with pytest.raises(ValueError, match="unknown --job-bookmark-option 'job-bookmark-sometimes'"):
        GlueEtlJob(region=REGION, role_arn=ROLE).run(S3Lake(LAKE_URL), bookmark_option="job-bookmark-sometimes")
    assert aws.get_jobs()["Jobs"] == []


# --- the Glue script's rules against the local job ----------------------------------------------------------------
def test_the_script_imports_without_spark_and_its_main_needs_glue():
    with pytest.raises(ModuleNotFoundError):
        script.main()


def test_the_script_curates_and_rejects_exactly_as_the_local_job(tmp_path):
    start = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
    good = [reading("dev-1", start + timedelta(minutes=i), ozone=40.0 + i) for i in range(4)]
    # An offset instead of Z: both jobs store it in UTC.
    good[1]["timestamp"] = (start + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    good[2]["temperature"] = 21.5  # a new numeric field
    late = {**good[0], "received_at": good[0]["received_at"] + 5000}  # the same message, arriving later
    bad = [
        reading("dev-1", start, ozone=5000.0),
        {**reading("dev-2", start), "device_id": None},
        reading("dev-2", start, timestamp="yesterday-ish"),
        reading("dev-2", start, nitrogen_dioxide="high"),
        reading("dev-2", start, latitude=91.0),
    ]
    lake = FolderLake(f"file://{tmp_path}/lake")
    first = put_raw(lake, good[:2] + bad[:2])
    second = put_raw(lake, [*good[2:], late, *bad[2:]])
    broken_key = put_raw(lake, [])
    lake.put_bytes(broken_key, b'{"message_id": "x", \n')
    DuckDBEtlJob().run(lake)

    lines = [(key, line) for key in (first, second, broken_key) for line in lake.get_bytes(key).decode().splitlines()]
    numeric = script.order_columns(
        [*DEFAULT_METRICS, *LOCATION_COLUMNS],
        {name for _, text in lines for name in script.numeric_fields(script.parse_line(text)[0] or {})},
    )
    classified = [c for key, text in lines if (c := script.classify_line(key, text, numeric, DEFAULT_RANGES))]
    rows = script.keep_first_arrival(row for kind, row in classified if kind == "good")
    rejects = [row for kind, row in classified if kind == "reject"]

    local = pq.read_table(f"{tmp_path}/lake/curated/telemetry").to_pylist()
    columns = ["message_id", "device_id", "timestamp", "received_at", "ozone", "temperature"]
    assert sorted((*(r[c] for c in columns), str(r["date"])) for r in local) == sorted(
        (*(r[c] for c in columns), r["date"]) for r in rows
    )
    assert len(rows) == 4 and [name for name, _ in script.curated_columns(numeric)] == curated_schema(numeric).names
    local_errors = [
        json.loads(line) for info in lake.list_objects("errors/") for line in lake.get_bytes(info.key).splitlines()
    ]
    assert len(rejects) == 6 and sorted(e["reason"] for e in local_errors) == sorted(e["reason"] for e in rejects)
    assert {e["raw_key"] for e in rejects} == {first, second, broken_key}
    assert 'nitrogen_dioxide is not a number: "high"' in {e["reason"] for e in rejects}


def test_duplicates_across_runs_and_the_job_arguments():
    moment = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    record = reading("dev-1", moment)
    row = script.curate(record, list(DEFAULT_METRICS))
    assert row["timestamp"] == moment and row["date"] == "2026-11-27" and row["received_at"].tzinfo == UTC
    assert script.keep_first_arrival([row], curated_ids={record["message_id"]}) == []
    assert script.parse_timestamp(iso(moment).replace("Z", "+01:00")) == moment - timedelta(hours=1)
    assert script.parse_timestamp("2026-11-27 23:30:00") == moment  # no offset: UTC, as the local job
    assert script.reject_reason({**record, "ozone": True}, ["ozone"], {}) == "ozone is not a number: true"
    assert script.lake_key("s3a://iotcast-lake/prod/raw/year=2026/x", LAKE_URL) == "raw/year=2026/x"
    lake, metrics, ranges = script.job_settings(
        {"lake": LAKE_URL + "/", "metrics": "ozone,pm", "ranges": '{"ozone": [0, 9]}'}
    )
    assert (lake, metrics, ranges) == (LAKE_URL, ["ozone", "pm"], {"ozone": [0.0, 9.0]})


# --- Athena -----------------------------------------------------------------------------------------------
def _executions(athena) -> list[dict]:
    ids = athena.list_query_executions()["QueryExecutionIds"]
    return [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]


def test_a_query_creates_the_tables_once_and_runs_in_the_workgroup_with_its_output_location(aws):
    athena = boto3.client("athena", region_name=REGION)
    athena.create_work_group(Name="iotcast")
    _raw_table(aws, {"message_id": "string", "timestamp": "string", "ozone": "double", "humidity": "double"})
    engine = AthenaQuery(region=REGION, workgroup="iotcast", poll_s=0)
    lake = S3Lake(LAKE_URL)
    result = engine.execute(
        lake, "SELECT device_id FROM telemetry_live WHERE device_id = ? AND ozone > ?", ["dev'1", 3]
    )
    engine.execute(lake, "SELECT count(*) FROM telemetry")
    executions = sorted(_executions(athena), key=lambda e: e["Status"]["SubmissionDateTime"])
    assert len(executions) == 4  # table + view once, then the two queries
    for execution in executions:
        assert execution["WorkGroup"] == "iotcast"
        assert execution["QueryExecutionContext"] == {"Database": "iotcast"}
        assert execution["ResultConfiguration"]["OutputLocation"].startswith(f"{LAKE_URL}/athena-results/")
    table, view = executions[0]["Query"], executions[1]["Query"]
    assert table.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS telemetry (")
    assert f"LOCATION '{LAKE_URL}/curated/telemetry/'" in table and "'projection.enabled'='true'" in table
    assert "`humidity` double" in table and "PARTITIONED BY (`date` string)" in table
    assert view.startswith("CREATE OR REPLACE VIEW telemetry_live AS") and "FROM telemetry_raw r" in view
    assert 'TRY_CAST(r."humidity" AS double)' in view and 'CAST(NULL AS double) AS "latitude"' in view
    select = next(e for e in executions if "telemetry_live WHERE" in e["Query"])
    assert select["ExecutionParameters"] == ["'dev''1'", "3"]
    assert result.rows == [] and result.bytes_scanned == 0


def test_duckdb_percentiles_are_sent_to_athena_in_its_dialect(aws):
    _raw_table(aws, {"message_id": "string", "timestamp": "string", "ozone": "double"})
    engine = AthenaQuery(region=REGION, poll_s=0)
    engine.execute(
        S3Lake(LAKE_URL),
        "SELECT date_trunc('hour', \"timestamp\") AS bucket, QUANTILE_CONT(ozone, 0.95) AS p95 FROM telemetry_live "
        "GROUP BY 1",
    )
    athena = boto3.client("athena", region_name=REGION)
    sent = next(e["Query"] for e in _executions(athena) if "GROUP BY" in e["Query"])
    assert "approx_percentile(ozone, 0.95)" in sent and "quantile_cont" not in sent.lower()


def test_writes_and_second_statements_never_reach_athena(aws):
    engine = AthenaQuery(region=REGION, poll_s=0)
    for sql in ("DROP TABLE telemetry", "INSERT INTO telemetry VALUES (1)", "SELECT 1; SELECT 2"):
        with pytest.raises(QueryRejected):
            engine.execute(S3Lake(LAKE_URL), sql)
    assert boto3.client("athena", region_name=REGION).list_query_executions()["QueryExecutionIds"] == []


def _query(stub, query_id: str, state: str = "SUCCEEDED", **status) -> None:
    stub.add_response("start_query_execution", {"QueryExecutionId": query_id})
    statistics = {"DataScannedInBytes": 123_456, "EngineExecutionTimeInMillis": 840}
    stub.add_response("get_query_execution", {"QueryExecution": {"QueryExecutionId": query_id,
                      "Status": {"State": "RUNNING"}}})  # fmt: skip
    stub.add_response("get_query_execution", {"QueryExecution": {"QueryExecutionId": query_id,
                      "Status": {"State": state, **status}, "Statistics": statistics}})  # fmt: skip


def _cells(*values) -> dict:
    return {"Data": [{} if value is None else {"VarCharValue": value} for value in values]}


def test_results_are_read_page_by_page_typed_by_column_info_with_athenas_statistics(aws):
    engine = AthenaQuery(region=REGION, poll_s=0)
    info = [{"Name": n, "Type": t} for n, t in (("device_id", "varchar"), ("n", "bigint"), ("mean", "double"),
            ("hour", "timestamp"), ("day", "date"), ("ok", "boolean"), ("total", "decimal"))]  # fmt: skip
    header = _cells("device_id", "n", "mean", "hour", "day", "ok", "total")
    first = _cells("dev-1", "60", "41.5", "2026-11-27 21:00:00.000", "2026-11-27", "true", "1.50")
    second = _cells("dev-2", "3", None, "2026-11-27 22:00:00.000", "2026-11-27", "false", None)
    with Stubber(engine._athena) as stub:
        for number in (1, 2):
            _query(stub, f"ddl-{number}")
        _query(stub, "q-1")
        page = {"ResultSet": {"Rows": [header, first], "ResultSetMetadata": {"ColumnInfo": info}}, "NextToken": "t1"}
        stub.add_response("get_query_results", page, {"QueryExecutionId": "q-1", "MaxResults": 1000})
        page = {"ResultSet": {"Rows": [second], "ResultSetMetadata": {"ColumnInfo": info}}}
        stub.add_response("get_query_results", page, {"QueryExecutionId": "q-1", "MaxResults": 1000, "NextToken": "t1"})
        result = engine.execute(S3Lake(LAKE_URL), "SELECT device_id, count(*) AS n FROM telemetry GROUP BY 1")
        stub.assert_no_pending_responses()
    assert result.columns == ["device_id", "n", "mean", "hour", "day", "ok", "total"]
    assert result.rows == [
        ("dev-1", 60, 41.5, datetime(2026, 11, 27, 21, tzinfo=UTC), date(2026, 11, 27), True, Decimal("1.50")),
        ("dev-2", 3, None, datetime(2026, 11, 27, 22, tzinfo=UTC), date(2026, 11, 27), False, None),
    ]
    assert (result.bytes_scanned, result.elapsed_ms) == (123_456, 840.0)


def test_failed_cancelled_and_overlong_queries(aws):
    engine = AthenaQuery(region=REGION, poll_s=0)
    lake = S3Lake(LAKE_URL)
    engine._ready.add(lake.url)  # the tables exist: only the query's own calls below
    with Stubber(engine._athena) as stub:
        error = {"ErrorCategory": 2, "ErrorMessage": "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved"}
        _query(stub, "q-1", "FAILED", AthenaError=error, StateChangeReason="generic")
        with pytest.raises(BackendError, match="Athena query failed: COLUMN_NOT_FOUND"):
            engine.execute(lake, "SELECT nope FROM telemetry")
        _query(stub, "q-2", "CANCELLED", StateChangeReason="Query cancelled by user")
        with pytest.raises(BackendError, match="cancelled: Query cancelled by user"):
            engine.execute(lake, "SELECT 1")
        stub.add_response("start_query_execution", {"QueryExecutionId": "q-3"})
        stub.add_response("get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-3",
                          "Status": {"State": "RUNNING"}}})  # fmt: skip
        stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-3"})
        with pytest.raises(QueryTimeout, match="time limit"):
            engine.execute(lake, "SELECT 1", timeout_s=1e-9)
        stub.assert_no_pending_responses()


def test_parameters_become_athena_literals_and_cells_python_values():
    moment = datetime(2026, 11, 27, 22, 0, 0, 500_000, tzinfo=UTC)
    assert [sql_literal(v) for v in (None, True, 7, 2.5, "it's", moment, date(2026, 11, 27))] == [
        "NULL", "true", "7", "2.5", "'it''s'", "TIMESTAMP '2026-11-27 22:00:00.500'", "DATE '2026-11-27'",
    ]  # fmt: skip
    assert convert("2026-11-27 21:00:00.000 UTC", "timestamp with time zone") == datetime(2026, 11, 27, 21, tzinfo=UTC)
    assert convert(None, "bigint") is None and convert("x", "varchar") == "x" and convert("3", "integer") == 3


# --- settings ---------------------------------------------------------------------------------------------
def test_the_aws_backend_setting_resolves_the_glue_and_athena_classes(tmp_path):
    code = (
        "import django; django.setup(); from cloud.backends import get_backend as g; "
        "c, e, q = g('catalog'), g('etl'), g('query'); "
        "print(type(c).__name__, type(e).__name__, type(q).__name__, c.role_arn == e.role_arn, q.workgroup, q.database)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "iotcast.settings", "IOTCAST_CLOUD_BACKEND": "aws",
           "IOTCAST_LAKE_URL": LAKE_URL, "IOTCAST_GLUE_ROLE_ARN": ROLE, "IOTCAST_ATHENA_WORKGROUP": "iotcast",
           "IOTCAST_STATE_DIR": str(tmp_path), "AWS_DEFAULT_REGION": REGION}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["GlueCrawler", "GlueEtlJob", "AthenaQuery", "True", "iotcast", "iotcast"]
