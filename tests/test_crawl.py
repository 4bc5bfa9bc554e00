"""The DuckDB crawler over a real folder lake, the crawl service and `manage.py crawl`."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command

from cloud.local.catalog import DuckDBCrawler
from forecasts.models import CatalogTable
from forecasts.selectors import telemetry_metrics
from forecasts.services.crawl import crawl_execute
from tests.telemetry_helpers import put_raw, reading

MOMENT = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


def test_crawl_infers_columns_types_and_partitions(lake):
    put_raw(lake, [reading("dev-a", MOMENT), reading("dev-b", MOMENT)], arrived=MOMENT)
    put_raw(lake, [reading("dev-a", MOMENT, humidity=55.5)], arrived=datetime(2026, 11, 28, 3, tzinfo=UTC))

    schema = DuckDBCrawler().crawl(lake)

    types = {column.name: column.type for column in schema.columns}
    assert types["humidity"] == "double"  # a new numeric field becomes a column
    assert types["ozone"] == types["latitude"] == "double"
    assert types["timestamp"] == types["message_id"] == types["device_id"] == "string"
    assert types["received_at"] == "bigint"
    assert (schema.database, schema.name, schema.classification) == ("iotcast", "telemetry_raw", "json")
    assert [key.name for key in schema.partition_keys] == ["year", "month", "day", "hour"]
    assert schema.partitions == [
        {"year": "2026", "month": "11", "day": "27", "hour": "21"},
        {"year": "2026", "month": "11", "day": "28", "hour": "03"},
    ]
    assert schema.objects_scanned == 2


def test_crawl_of_an_empty_lake_reports_the_contract_columns(lake):
    schema = DuckDBCrawler().crawl(lake)
    assert schema.objects_scanned == 0 and schema.partitions == []
    assert {"message_id", "ozone", "device_id", "received_at"} <= {column.name for column in schema.columns}


@pytest.mark.django_db
def test_crawl_service_upserts_the_catalog_and_metrics_follow_it(lake):
    assert telemetry_metrics()[0] == "ozone"  # the contract defaults before any crawl
    put_raw(lake, [reading("dev-a", MOMENT)])
    crawl_execute({})
    put_raw(lake, [reading("dev-a", MOMENT, wind_speed=3.5)])

    summary = crawl_execute({})

    assert CatalogTable.objects.count() == 1
    table = CatalogTable.objects.get()
    assert summary == {
        "table": "iotcast.telemetry_raw",
        "columns": len(table.columns),
        "partitions": 1,
        "objects_scanned": 2,
        "partitions_read": 1,
        "columns_added": ["wind_speed"],
        "columns_logged": [],
        "type_conflicts": [],
        "partitions_removed": [],
        "unreadable_objects": [],
        "update_behavior": "UPDATE_IN_DATABASE",
        "delete_behavior": "DEPRECATE_IN_DATABASE",
        "recrawl_policy": "CRAWL_EVERYTHING",
    }
    assert [entry["change"] for entry in table.schema_changes] == ["table_created", "column_added"]
    assert "wind_speed" in telemetry_metrics()
    assert "latitude" not in telemetry_metrics()


@pytest.mark.django_db
def test_crawl_command_prints_progress(lake):
    put_raw(lake, [reading("dev-a", MOMENT)])
    out = StringIO()
    call_command("crawl", stdout=out)
    text = out.getvalue()
    assert "%  inferring the schema from 1 of 1 objects" in text
    assert "succeeded" in text and "objects_scanned: 1" in text


def test_table_locations_name_the_zone_without_the_lake_urls_endpoint_query(lake):
    from cloud.lake import S3Lake, s3_lake_url

    seaweed = S3Lake(s3_lake_url("iotcast-lake", "site-a", endpoint="http://127.0.0.1:8333", region="eu-west-1"))
    assert seaweed.location("raw/") == "s3://iotcast-lake/site-a/raw/"
    assert DuckDBCrawler().crawl(lake).location == f"{lake.url.rstrip('/')}/raw/"
