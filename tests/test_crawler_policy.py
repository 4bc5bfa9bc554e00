"""The crawler's Glue policies on a real folder lake: UpdateBehavior, DeleteBehavior, RecrawlPolicy, type conflicts."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from forecasts.models import CatalogTable, PipelineRun
from forecasts.schedule import due_steps
from forecasts.selectors import telemetry_metrics
from forecasts.services.crawl import crawl_execute, crawl_policy
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db
HOUR = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


def at(hours: int) -> datetime:
    return HOUR + timedelta(hours=hours)


def put_hour(lake, hours: int, **extra) -> str:
    """Store one object with one reading in the partition of HOUR + hours; return its key."""
    return put_raw(lake, [reading("dev-a", at(hours), **extra)], arrived=at(hours))


def table() -> CatalogTable:
    return CatalogTable.objects.get(database="iotcast", name="telemetry_raw")


def types() -> dict[str, str]:
    return {column["name"]: column["type"] for column in table().columns}


def test_update_in_database_adds_a_new_numeric_field_as_a_column(lake):
    put_hour(lake, 0)
    crawl_execute({})
    put_hour(lake, 1, humidity=55.0)

    summary = crawl_execute({"update_behavior": "UPDATE_IN_DATABASE"})

    assert summary["columns_added"] == ["humidity"] and types()["humidity"] == "double"
    assert "humidity" in telemetry_metrics()
    assert table().schema_changes[-1]["change"] == "column_added"


def test_log_records_a_new_field_without_changing_the_table_until_an_update_run(lake):
    put_hour(lake, 0)
    crawl_execute({})
    before = types()
    put_hour(lake, 1, humidity=55.0)

    summary = crawl_execute({"update_behavior": "LOG"})

    assert summary["columns_logged"] == ["humidity"] and summary["columns_added"] == []
    assert types() == before and "humidity" not in telemetry_metrics()
    assert table().pending_columns == [{"name": "humidity", "type": "double"}]
    assert table().schema_changes[-1]["change"] == "column_logged"
    # A second LOG run does not log it again; an UPDATE run adds it even when it reads only new folders.
    crawl_execute({"update_behavior": "LOG"})
    assert [entry["change"] for entry in table().schema_changes].count("column_logged") == 1
    summary = crawl_execute({"update_behavior": "UPDATE_IN_DATABASE", "recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"})
    assert summary["columns_added"] == ["humidity"] and table().pending_columns == []


def test_a_numeric_field_arriving_as_text_is_a_conflict_and_keeps_its_type(lake):
    put_hour(lake, 0)
    crawl_execute({})
    put_hour(lake, 1, ozone="high")

    summary = crawl_execute({})

    (conflict,) = summary["type_conflicts"]
    assert conflict.startswith("ozone: table type double, found string in year=2026/month=11/day=27/hour=22")
    assert types()["ozone"] == "double"  # never coerced
    assert table().schema_conflicts == [
        {"column": "ozone", "table_type": "double", "found": {"year=2026/month=11/day=27/hour=22": "string"}}
    ]
    assert table().schema_changes[-1]["change"] == "type_conflict"


def test_a_text_field_arriving_as_a_number_is_a_conflict(lake):
    put_hour(lake, 0, status="ok")
    crawl_execute({})
    assert types()["status"] == "string"
    put_hour(lake, 1, status=3)

    summary = crawl_execute({})

    assert summary["type_conflicts"][0].startswith("status: table type string, found double in")
    assert types()["status"] == "string" and "status" not in telemetry_metrics()


def test_a_new_field_numeric_in_one_partition_and_text_in_another_is_reported_not_added(lake):
    put_hour(lake, 0)
    put_hour(lake, 1, pressure=1013.0)
    put_hour(lake, 2, pressure="n/a")
    put_raw(lake, [reading("dev-a", at(3), wind=1.0), reading("dev-a", at(3), wind="calm")], arrived=at(3))

    summary = crawl_execute({})

    conflicts = {item["column"]: item for item in table().schema_conflicts}
    assert set(conflicts) == {"pressure", "wind"} and len(summary["type_conflicts"]) == 2
    assert set(conflicts["pressure"]["found"].values()) == {"double", "string"}
    assert conflicts["wind"]["found"] == {"year=2026/month=11/day=28/hour=00": "mixed"}
    assert "pressure" not in types() and "wind" not in types()


def test_new_folders_only_reads_only_partitions_not_crawled_before(lake):
    put_hour(lake, 0)
    put_hour(lake, 1)
    crawl_execute({"recrawl_policy": "CRAWL_EVERYTHING"})
    # Into a crawled partition: a new field and a corrupt object, neither read by the next crawl.
    put_hour(lake, 1, unseen=1.0)
    lake.put_bytes("raw/year=2026/month=11/day=27/hour=22/iotcast-telemetry-1-corrupt", b"{not json\n")
    put_hour(lake, 2, humidity=50.0)

    summary = crawl_execute({"recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"})

    assert (summary["objects_scanned"], summary["partitions_read"], summary["partitions"]) == (1, 1, 3)
    assert "humidity" in types() and "unseen" not in types()
    summary = crawl_execute({"recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"})
    assert (summary["objects_scanned"], summary["partitions_read"], summary["columns_added"]) == (0, 0, [])
    assert "humidity" in types()  # a crawl that read nothing changes nothing


def test_a_corrupt_object_is_skipped_and_named_not_fatal(lake):
    put_hour(lake, 0)
    corrupt = "raw/year=2026/month=11/day=27/hour=21/iotcast-telemetry-1-corrupt"
    lake.put_bytes(corrupt, b'{"ozone": 1.0}\n{not json\n')
    put_hour(lake, 1, humidity=50.0)

    summary = crawl_execute({})

    assert summary["unreadable_objects"] == [corrupt]
    assert {"ozone", "humidity"} <= set(types()) and summary["partitions_read"] == 2


def test_new_folders_only_keeps_conflicts_of_partitions_it_does_not_reread(lake):
    put_hour(lake, 0)
    crawl_execute({})
    put_hour(lake, 1, ozone="high")
    crawl_execute({"recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"})
    put_hour(lake, 2)

    summary = crawl_execute({"recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"})

    assert len(summary["type_conflicts"]) == 1 and table().schema_conflicts[0]["column"] == "ozone"
    assert [entry["change"] for entry in table().schema_changes].count("type_conflict") == 1


@pytest.mark.parametrize(
    ("behavior", "partitions", "deprecated", "change"),
    [
        ("LOG", 3, 0, "partitions_missing"),
        ("DELETE_FROM_DATABASE", 2, 0, "partitions_deleted"),
        ("DEPRECATE_IN_DATABASE", 2, 1, "partitions_deprecated"),
    ],
)
def test_delete_behavior_for_a_partition_gone_from_the_lake(lake, behavior, partitions, deprecated, change):
    put_hour(lake, 0)
    gone = put_hour(lake, 1)
    put_hour(lake, 2)
    crawl_execute({})
    lake.delete(gone)

    summary = crawl_execute({"delete_behavior": behavior})

    assert (len(table().partitions), len(table().deprecated_partitions)) == (partitions, deprecated)
    entry = table().schema_changes[-1]
    assert entry["change"] == change and entry["partitions"] == ["year=2026/month=11/day=27/hour=22"]
    assert summary["partitions_removed"] == ([] if behavior == "LOG" else ["year=2026/month=11/day=27/hour=22"])
    if behavior == "DEPRECATE_IN_DATABASE":
        assert table().deprecated_partitions == [{"year": "2026", "month": "11", "day": "27", "hour": "22"}]
        put_hour(lake, 1)  # the partition comes back: no longer deprecated
        crawl_execute({})
        assert (len(table().partitions), table().deprecated_partitions) == (3, [])


def test_policies_come_from_settings_unless_the_run_names_them(settings):
    settings.CRAWLER_UPDATE_BEHAVIOR = "LOG"
    policy = crawl_policy({"recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"})
    assert (policy.update_behavior, policy.delete_behavior, policy.recrawl_policy) == (
        "LOG",
        "DEPRECATE_IN_DATABASE",
        "CRAWL_NEW_FOLDERS_ONLY",
    )
    with pytest.raises(ValueError, match="delete_behavior 'DROP' must be one of LOG"):
        crawl_policy({"delete_behavior": "DROP"})


def test_scheduled_crawls_read_new_folders_only():
    crawl_params = dict(due_steps())["crawl"]
    assert crawl_params == {"recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"}


def test_crawl_command_options_set_the_run_policy(lake):
    put_hour(lake, 0)
    out = StringIO()
    call_command("crawl", "--update-behavior", "LOG", "--recrawl-policy", "CRAWL_NEW_FOLDERS_ONLY", stdout=out)
    run = PipelineRun.objects.get(kind="crawl")
    assert run.params == {"update_behavior": "LOG", "recrawl_policy": "CRAWL_NEW_FOLDERS_ONLY"}
    assert "recrawl_policy: CRAWL_NEW_FOLDERS_ONLY" in out.getvalue()
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("crawl", "--delete-behavior", "DROP", stdout=StringIO(), stderr=StringIO())


def test_the_catalog_api_shows_conflicts_changes_and_the_last_crawl(lake, django_user_model):
    put_hour(lake, 0)
    crawl_execute({})
    put_hour(lake, 1, ozone="high")
    crawl_execute({"update_behavior": "LOG"})
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("op", password="pw"))

    (data,) = client.get("/api/v1/catalog/tables/").json()

    assert data["schema_conflicts"][0]["column"] == "ozone"
    assert [entry["change"] for entry in data["schema_changes"]] == ["table_created", "type_conflict"]
    assert data["last_crawl"]["update_behavior"] == "LOG" and data["last_crawl"]["partitions_read"] == 2
