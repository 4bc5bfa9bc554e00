"""The /lake/ pages over a real folder lake and real DuckDB: catalog, admin SQL console, import upload, export."""

import io
import json
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from devices.models import Device
from forecasts.services.crawl import crawl_execute
from forecasts.services.lake_sql import SqlRejected, lake_sql_run, sql_single_select
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db


def signed_in(**extra) -> Client:
    client = Client()
    name = "lead" if extra.get("is_staff") else "operator"
    client.force_login(get_user_model().objects.create_user(name, password=f"pw-{name}-1", **extra))
    return client


@pytest.fixture
def operator():
    return signed_in()


@pytest.fixture
def admin():
    return signed_in(is_staff=True)


@pytest.fixture
def readings(lake):
    """Three readings of dev-lake in the last hour (ozone 1, 2, 3) and one of another device."""
    now = timezone.now()
    put_raw(lake, [reading("dev-lake", now - timedelta(minutes=m), ozone=float(m)) for m in (3, 2, 1)])
    put_raw(lake, [reading("other", now)])
    return Device.objects.create(name="dev-lake")


def test_catalog_page_shows_columns_partitions_last_crawl_and_conflicts(operator, readings, lake):
    crawl_execute({})
    put_raw(lake, [reading("dev-lake", timezone.now(), ozone="high")], arrived=timezone.now() + timedelta(hours=2))
    crawl_execute({"update_behavior": "LOG"})

    page = operator.get(reverse("lake:catalog")).content.decode()

    assert "iotcast.telemetry_raw" in page and "<td>ozone</td><td><code>double</code></td>" in page
    assert "Type conflicts</strong>" in page and "type_conflict" in page and "table_created" in page
    assert "CRAWL_EVERYTHING" in page and "update <code>LOG</code>" in page
    assert 'href="/lake/sql/"' not in page  # the admin-only tabs are hidden from operators


def test_catalog_page_when_nothing_was_crawled(operator, lake):
    assert "The catalog is empty" in operator.get(reverse("lake:catalog")).content.decode()


def test_anonymous_users_are_sent_to_sign_in(lake):
    for name in ("catalog", "sql", "import", "export"):
        assert Client().get(reverse(f"lake:{name}")).status_code == 302


def test_operators_get_403_on_the_admin_pages(operator, lake):
    assert operator.get(reverse("lake:sql")).status_code == 403
    assert operator.post(reverse("lake:sql"), {"sql": "SELECT 1"}).status_code == 403
    assert operator.get(reverse("lake:import")).status_code == 403
    assert operator.get(reverse("lake:export")).status_code == 200


def run_sql(admin: Client, sql: str) -> str:
    response = admin.post(reverse("lake:sql"), {"sql": sql})
    assert response.status_code == 200
    return response.content.decode()


def test_sql_console_shows_rows_elapsed_time_and_bytes_scanned(admin, readings):
    page = run_sql(admin, "SELECT device_id, ozone FROM telemetry_live WHERE device_id = 'dev-lake' ORDER BY ozone;")

    assert page.count("<td>dev-lake</td>") == 3 and "<td>1.0</td>" in page
    assert 'href="/lake/import/"' in page  # admins see every tab
    assert '<b id="row-count">3</b>' in page and '<b id="elapsed">' in page
    scanned = int(page.split('bytes-scanned">')[1].split("(")[1].split(" bytes")[0])
    assert scanned > 0


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE telemetry", "only SELECT queries are allowed, got DROP"),
        ("INSERT INTO telemetry VALUES (1)", "only SELECT queries are allowed, got INSERT"),
        ("SELECT 1; DELETE FROM telemetry", "expected exactly one SELECT statement, got 2"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELECT * FROM read_csv('/etc/passwd')", "query failed"),
    ],
)
def test_sql_console_refuses_anything_but_one_select_inline(admin, lake, sql, message):
    page = run_sql(admin, sql)
    assert 'id="sql-error"' in page and message in page


def test_sql_console_limits_rows(admin, lake, settings):
    settings.LAKE_SQL_MAX_ROWS = 5
    page = run_sql(admin, "SELECT range AS n FROM range(100) -- a trailing comment")

    assert '<b id="row-count">5</b>' in page and "cut at the limit of 5" in page
    assert "<td>4</td>" in page and "<td>5</td>" not in page


def test_sql_console_stops_a_query_at_the_time_limit(lake):
    slow = "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"
    with pytest.raises(Exception, match=r"time limit of 0\.3 s") as caught:
        lake_sql_run(slow, timeout_s=0.3)
    assert type(caught.value).__name__ == "QueryTimeout"
    assert lake_sql_run("SELECT 42 AS answer").rows == [(42,)]  # the engine still answers afterwards


def test_single_select_check():
    assert (
        sql_single_select("  WITH a AS (SELECT 1 AS x) SELECT * FROM a;  ")
        == "WITH a AS (SELECT 1 AS x) SELECT * FROM a"
    )
    with pytest.raises(SqlRejected, match="enter a SELECT"):
        sql_single_select("  ")
    with pytest.raises(SqlRejected, match="got COPY"):
        sql_single_select("COPY telemetry TO '/tmp/x.csv'")


def test_import_upload_lands_rows_in_the_raw_zone_and_reports_bad_lines(admin, lake):
    Device.objects.create(name="dev-hist")
    csv_text = (
        "timestamp,o3,pm\n"
        "2026-01-01T00:00:00Z,41.5,12\n"
        "2026-01-01T01:00:00Z,not-a-number,12\n"
        "2026-01-01T02:00:00Z,43.0,\n"
    )
    upload = SimpleUploadedFile("history.csv", csv_text.encode(), content_type="text/csv")

    response = admin.post(
        reverse("lake:import"), {"file": upload, "device": "dev-hist", "metric_map": "o3=ozone pm=particulate_matter"}
    )

    page = response.content.decode()
    assert '<span class="stat-value" id="imported">2</span>' in page
    assert '<span class="stat-value" id="rejected">1</span>' in page
    assert (
        "<td>3</td><td>column &#x27;o3&#x27;: could not convert string to float: &#x27;not-a-number&#x27;</td>" in page
    )
    (raw,) = lake.list_objects("raw/")
    records = [json.loads(line) for line in lake.get_bytes(raw.key).decode().splitlines()]
    assert [(record["device_id"], record["ozone"]) for record in records] == [("dev-hist", 41.5), ("dev-hist", 43.0)]


def test_import_refuses_an_unknown_device_and_another_file_type(admin, lake):
    upload = SimpleUploadedFile("history.xlsx", b"x", content_type="application/octet-stream")
    page = admin.post(reverse("lake:import"), {"file": upload, "device": "nobody"}).content.decode()
    assert "upload a .csv, .ndjson" in page and "Select a valid choice" in page
    assert lake.list_objects("raw/") == []


def test_export_downloads_csv_and_parquet(operator, readings):
    params = {"device": "dev-lake", "metrics": ["ozone"], "format": "csv"}
    response = operator.get(reverse("lake:export"), params)

    assert response["Content-Type"] == "text/csv"
    assert 'filename="dev-lake-readings.csv"' in response["Content-Disposition"]
    lines = response.content.decode().splitlines()
    assert lines[0] == "timestamp,received_at,message_id,ozone"
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["3.0", "2.0", "1.0"]  # oldest first

    parquet = operator.get(reverse("lake:export"), {**params, "format": "parquet"})
    assert pq.read_table(io.BytesIO(parquet.content)).column("ozone").to_pylist() == [3.0, 2.0, 1.0]


def test_export_form_shows_errors_instead_of_downloading(operator, readings):
    page = operator.get(reverse("lake:export")).content.decode()
    assert 'id="export-form"' in page and 'value="ozone"' in page
    bad = operator.get(
        reverse("lake:export"),
        {"device": "dev-lake", "format": "csv", "start": "2026-01-02T00:00", "end": "2026-01-01T00:00"},
    )
    assert bad["Content-Type"].startswith("text/html") and "the start must not be after the end" in bad.content.decode()
