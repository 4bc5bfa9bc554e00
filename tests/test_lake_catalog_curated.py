"""The curated Parquet table in the catalog (recorded after each ETL run) and the SQL console over it:
its table list comes from the catalog, and its bytes scanned are what the query read, not the lake's size.

Real folder lake, real DuckDB ETL and query engine; the Glue calls of the aws backend run against moto.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from moto.server import ThreadedMotoServer
from rest_framework.test import APIClient

from cloud.aws.catalog import GlueCrawler
from cloud.lake import S3Lake
from cloud.local.catalog import curated_table
from cloud.local.etl import DuckDBEtlJob
from forecasts.models import CatalogTable
from forecasts.services.crawl import crawl_execute
from forecasts.services.etl import etl_execute
from forecasts.services.lake_sql import console_tables, lake_sql_run
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db

DAY_1 = datetime(2026, 11, 25, 10, tzinfo=UTC)
DAY_2 = DAY_1 + timedelta(days=1)


def put_day(lake, moment: datetime, count: int = 50, **extra) -> None:
    """Store count readings of two devices, one a minute from moment, arriving the same hour."""
    records = [reading(f"dev-{i % 2}", moment + timedelta(minutes=i), ozone=float(i), **extra) for i in range(count)]
    put_raw(lake, records, arrived=moment)


def curated(database: str = "iotcast") -> CatalogTable:
    return CatalogTable.objects.get(database=database, name="telemetry")


def test_an_etl_run_records_the_curated_parquet_table_in_the_catalog(lake):
    put_day(lake, DAY_1)
    result = etl_execute({})

    table = curated()
    assert result["catalog_table"] == "iotcast.telemetry" and result["catalog_partitions"] == 1
    assert table.classification == "parquet" and table.location == f"{lake.url}/curated/telemetry/"
    assert table.partition_keys == [{"name": "date", "type": "string"}]
    assert table.partitions == [{"date": "2026-11-25"}]
    types = {column["name"]: column["type"] for column in table.columns}
    assert types["message_id"] == "string" and types["timestamp"] == "timestamp" and types["ozone"] == "double"
    assert "date" not in types  # the partition key is no column, as in Glue
    assert table.objects_scanned == len(lake.list_objects("curated/telemetry/"))
    assert table.last_crawl["source"] == "etl"


def test_the_next_run_adds_the_new_date_and_a_new_metrics_column(lake):
    put_day(lake, DAY_1)
    etl_execute({})
    put_day(lake, DAY_2, humidity=55.0)
    etl_execute({})

    table = curated()
    assert table.partitions == [{"date": "2026-11-25"}, {"date": "2026-11-26"}]
    assert {"name": "humidity", "type": "double"} in table.columns
    assert [entry["change"] for entry in table.schema_changes] == ["table_created", "column_added"]
    assert CatalogTable.objects.filter(name="telemetry").count() == 1


def test_a_curated_file_with_a_corrupt_footer_is_skipped_and_named(lake):
    put_day(lake, DAY_1)
    etl_execute({})
    bad = "curated/telemetry/date=2026-11-24/part-corrupt.parquet"
    lake.put_bytes(bad, b"PAR1 this is no parquet")

    schema = curated_table(lake)

    assert schema.unreadable == [bad] and schema.partitions == [{"date": "2026-11-25"}]
    assert {column.name for column in schema.columns} >= {"message_id", "ozone"}


def test_the_catalog_page_and_api_show_both_tables(lake, django_user_model):
    put_day(lake, DAY_1)
    crawl_execute({})
    etl_execute({})
    user = django_user_model.objects.create_user("op", password="pw-op-1")
    api = APIClient()
    api.force_authenticate(user)
    page = Client()
    page.force_login(user)

    listed = {(table["name"], table["classification"]) for table in api.get("/api/v1/catalog/tables/").json()}
    html = page.get(reverse("lake:catalog")).content.decode()

    assert listed == {("telemetry", "parquet"), ("telemetry_raw", "json")}
    assert "iotcast.telemetry</h2>" in html and "iotcast.telemetry_raw</h2>" in html
    assert "recorded by the ETL job" in html and "<li>date=2026-11-25</li>" in html


def test_the_console_lists_the_catalogs_parquet_tables_and_the_live_view(lake):
    assert [(table.name, table.kind) for table in console_tables()] == [("telemetry_live", "view")]
    put_day(lake, DAY_1)
    crawl_execute({})  # telemetry_raw (JSON) is read through telemetry_live, not listed on its own
    etl_execute({})

    assert [(table.name, table.kind) for table in console_tables()] == [
        ("telemetry", "table"),
        ("telemetry_live", "view"),
    ]
    admin = Client()
    admin.force_login(get_user_model().objects.create_user("lead", password="pw-lead-1", is_staff=True))
    html = admin.get(reverse("lake:sql")).content.decode()
    assert '<code>telemetry</code> <span class="muted">(table)</span> iotcast.telemetry: parquet' in html
    assert '<code>telemetry_live</code> <span class="muted">(view)</span>' in html


def test_bytes_scanned_is_what_the_query_read(lake):
    for day in (DAY_1, DAY_2, DAY_2 + timedelta(days=1)):
        put_day(lake, day, count=600)
    etl_execute({})
    curated_size = sum(info.size for info in lake.list_objects("curated/telemetry/"))

    everything = lake_sql_run("SELECT * FROM telemetry", row_limit=5000)
    one_column_one_day = lake_sql_run("SELECT ozone FROM telemetry WHERE date = '2026-11-26'", row_limit=5000)
    nothing = lake_sql_run("SELECT 42 AS answer")

    assert len(everything.rows) == 1800 and len(one_column_one_day.rows) == 600
    assert 0 < one_column_one_day.bytes_scanned < everything.bytes_scanned / 3
    assert everything.bytes_scanned <= curated_size  # the column chunks, not the footers and headers
    assert nothing.bytes_scanned == 0
    assert "Parquet column chunks" in everything.bytes_scanned_basis


def test_bytes_scanned_of_the_live_view_counts_the_raw_tail_it_read(lake):
    put_day(lake, DAY_1, count=500)
    etl_execute({})
    put_day(lake, DAY_2, count=500)  # not curated yet: the raw tail

    curated_only = lake_sql_run("SELECT ozone FROM telemetry_live WHERE date = '2026-11-25'")
    with_tail = lake_sql_run("SELECT ozone FROM telemetry_live", row_limit=5000)

    assert len(with_tail.rows) == 1000
    assert 0 < curated_only.bytes_scanned < with_tail.bytes_scanned


def test_the_console_page_labels_the_bytes_figure(lake):
    put_day(lake, DAY_1)
    etl_execute({})
    admin = Client()
    admin.force_login(get_user_model().objects.create_user("lead", password="pw-lead-1", is_staff=True))

    html = admin.post(reverse("lake:sql"), {"sql": "SELECT device_id FROM telemetry"}).content.decode()

    scanned = int(html.split('id="bytes-scanned">')[1].split("(")[1].split(" bytes")[0])
    assert 0 < scanned < sum(info.size for info in lake.list_objects("curated/telemetry/"))
    assert 'id="bytes-scanned-basis"' in html


# --- aws: the Glue Data Catalog ---------------------------------------------------------------------------
LAKE_URL = "s3://iotcast-lake/prod"


@pytest.fixture
def glue(mocked_aws):
    """moto's Glue in process; the lake's S3 on a moto server, which pyarrow (reading footers) can reach."""
    return boto3.client("glue", region_name="us-east-1")


@pytest.fixture
def s3_lake(mocked_aws):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Lake(f"{LAKE_URL}?endpoint=http://{host}:{port}&region=us-east-1")
    server.stop()


def test_glue_gets_a_parquet_table_over_curated_and_its_date_partitions(glue, s3_lake):
    lake = s3_lake
    put_day(lake, DAY_1)
    DuckDBEtlJob().run(lake)

    schema = GlueCrawler(region="us-east-1").register_curated(lake)

    table = glue.get_table(DatabaseName="iotcast", Name="telemetry")["Table"]
    storage = table["StorageDescriptor"]
    assert table["Parameters"]["classification"] == "parquet" and table["TableType"] == "EXTERNAL_TABLE"
    assert storage["Location"] == f"{LAKE_URL}/curated/telemetry/" == schema.location
    assert storage["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert {"Name": "ozone", "Type": "double"} in storage["Columns"]
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
    (partition,) = glue.get_partitions(DatabaseName="iotcast", TableName="telemetry")["Partitions"]
    assert partition["Values"] == ["2026-11-25"]
    assert partition["StorageDescriptor"]["Location"] == f"{LAKE_URL}/curated/telemetry/date=2026-11-25/"


def test_a_later_run_updates_the_table_adds_only_new_partitions_and_keeps_athenas_properties(glue, s3_lake):
    lake = s3_lake
    crawler = GlueCrawler(region="us-east-1")
    put_day(lake, DAY_1)
    DuckDBEtlJob().run(lake)
    crawler.register_curated(lake)
    table = glue.get_table(DatabaseName="iotcast", Name="telemetry")["Table"]
    # The Athena backend's partition projection, set on the same table, must survive the update.
    projection = {**table["Parameters"], "projection.enabled": "true"}
    glue.update_table(
        DatabaseName="iotcast",
        TableInput={"Name": "telemetry", "StorageDescriptor": table["StorageDescriptor"],
                    "PartitionKeys": table["PartitionKeys"], "Parameters": projection},
    )  # fmt: skip
    put_day(lake, DAY_2, humidity=60.0)
    DuckDBEtlJob().run(lake)

    crawler.register_curated(lake)

    table = glue.get_table(DatabaseName="iotcast", Name="telemetry")["Table"]
    assert table["Parameters"]["projection.enabled"] == "true"
    assert {"Name": "humidity", "Type": "double"} in table["StorageDescriptor"]["Columns"]
    partitions = glue.get_partitions(DatabaseName="iotcast", TableName="telemetry")["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == ["2026-11-25", "2026-11-26"]


def test_bytes_scanned_on_an_s3_lake_counts_the_rows_the_arrow_scans_read(s3_lake):
    from cloud.local.query import ARROW_BYTES_SCANNED_BASIS, DuckDBQuery

    for day in (DAY_1, DAY_2):
        put_day(s3_lake, day, count=300)
    DuckDBEtlJob().run(s3_lake)
    engine = DuckDBQuery()

    everything = engine.execute(s3_lake, "SELECT * FROM telemetry")
    one_column_one_day = engine.execute(s3_lake, "SELECT ozone FROM telemetry WHERE date = '2026-11-26'")

    assert len(everything.rows) == 600 and len(one_column_one_day.rows) == 300
    assert one_column_one_day.bytes_scanned == 300 * 8  # 300 doubles: one column of one date
    assert everything.bytes_scanned > 10 * one_column_one_day.bytes_scanned
    assert everything.bytes_scanned_basis == ARROW_BYTES_SCANNED_BASIS
