"""bench/ingest.py in a tiny size, so the benchmark cannot rot: real broker, real workers, every reading found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_ingest_bench_runs_end_to_end_and_accounts_for_every_reading():
    argv = [sys.executable, "bench/ingest.py", "--devices", "20", "--rate", "400", "--seconds", "3"]
    argv += ["--workers", "2", "--generators", "1"]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["connections"] == 20 and figures["workers"] == 2
    assert figures["readings_published"] == figures["messages_acked"] * figures["batch"] > 0
    assert (figures["lost"], figures["duplicated"]) == (0, 0), figures
    assert 0 < figures["readings_per_s"] <= figures["offered_readings_per_s"] * 1.01
    assert figures["p50_latency_s"] <= figures["p99_latency_s"]
