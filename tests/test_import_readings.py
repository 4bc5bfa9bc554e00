"""manage.py import_readings: CSV/NDJSON history through the IoT rule and delivery stream into raw/."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from cloud.local.etl import DuckDBEtlJob
from devices.models import Device
from forecasts.selectors import readings_recent

pytestmark = pytest.mark.django_db

CSV = """timestamp,o3,pm,station
2026-11-27T10:00:00Z,41.5,12,north
2026-11-27T11:00:00Z,not-a-number,13,north
,40,14,north
2026-11-27T12:00:00Z,39.0,,north
2026-11-27T13:00:00+01:00,38.0,15,north
"""


def run_import(path, *extra):
    out, err = StringIO(), StringIO()
    call_command("import_readings", str(path), "--device", "dev-hist", *extra, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_csv_import_keeps_good_rows_reports_bad_ones_and_curates(lake, tmp_path):
    Device.objects.create(name="dev-hist")
    path = tmp_path / "history.csv"
    path.write_text(CSV)

    out, err = run_import(path, "--metric-map", "o3=ozone", "pm=particulate_matter")
    run_import(path, "--metric-map", "o3=ozone", "pm=particulate_matter")
    result = DuckDBEtlJob().run(lake)

    assert "imported 3 of 5 rows for dev-hist (2 rejected)" in out and "100.0%" in out
    assert "line 3: column 'o3'" in err and "line 4: no timestamp" in err
    assert (result.rows_read, result.rows_written, result.duplicates_dropped) == (6, 3, 3)  # re-import adds nothing
    rows = readings_recent("dev-hist", start=datetime(2026, 11, 27, tzinfo=UTC), end=datetime(2026, 11, 28, tzinfo=UTC))
    assert sorted((row["timestamp"].hour, row["ozone"], row["particulate_matter"] or 0.0) for row in rows) == [
        (10, 41.5, 12.0),
        (12, 38.0, 15.0),  # 13:00+01:00 is 12:00 UTC
        (12, 39.0, 0.0),  # an empty cell is a missing reading, not zero
    ]
    assert "station" not in rows[0]  # only the mapped columns were imported


def test_ndjson_import_and_bad_input(lake, tmp_path):
    Device.objects.create(name="dev-hist")
    path = tmp_path / "history.ndjson"
    path.write_text('{"timestamp": "2026-11-27T10:00:00Z", "ozone": 4}\n{broken\n{"timestamp": "yesterday"}\n')

    out, err = run_import(path)

    assert "imported 1 of 3 rows" in out
    assert "line 2: not JSON" in err and "line 3:" in err and "ISO-8601" in err
    with pytest.raises(CommandError, match="no device named 'ghost'"):
        call_command("import_readings", str(path), "--device", "ghost", stdout=StringIO())
    with pytest.raises(CommandError, match="column=metric_name"):
        run_import(path, "--metric-map", "nonsense")
    with pytest.raises(CommandError, match="no such file"):
        run_import(tmp_path / "missing.csv")
