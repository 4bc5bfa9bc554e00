"""bench/etl.py in a tiny size: the query-after-new-object figure times queries that take in each new object."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_etl", REPO / "bench" / "etl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_timed_query_follows_a_new_raw_object_it_sees(tmp_path):
    from cloud.lake import FolderLake
    from cloud.local.etl import DuckDBEtlJob
    from cloud.local.query import DuckDBQuery

    bench = load_bench()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    lake = FolderLake(f"file://{tmp_path}/lake")
    bench.generate(lake, 480, end, "t", duplicates=0)
    DuckDBEtlJob().run(lake)
    engine = DuckDBQuery()
    start = end - timedelta(hours=24)
    params = ["dev-0042", start, end, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}", 1000]
    count_sql = "SELECT count(*) FROM telemetry_live"
    before = engine.execute(lake, count_sql).rows[0][0]

    figures = bench.query_after_new_object(engine, lake, end, params, 3)

    assert engine.execute(lake, count_sql).rows[0][0] == before + 3 * 20  # every new object reached the tables
    assert figures["query_after_new_object_samples"] == 3
    p50, p95, top = (figures[f"query_after_new_object_{name}_ms"] for name in ("p50", "p95", "max"))
    assert 0 < p50 <= p95 <= top


def test_quick_run_prints_one_json_object_with_both_query_figures():
    run = subprocess.run(
        [sys.executable, "bench/etl.py", "--rows", "2400", "--query-rows", "2400", "--repeats", "3",
         "--after-new-object", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["query_rows_returned"] > 0 and figures["query_p50_ms"] <= figures["query_p95_ms"]
    assert figures["query_after_new_object_p50_ms"] <= figures["query_after_new_object_max_ms"]
    assert figures["query_after_new_object_samples"] == 3
