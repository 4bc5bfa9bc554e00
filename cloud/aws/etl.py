"""aws ETL backend: the Glue job running cloud/aws/glue/telemetry_etl.py (PySpark) with Glue's job bookmarks.

Each run uploads the script from the repository to the lake (scripts/glue/telemetry_etl.py), creates the job
or updates it when its definition changed, starts a run with the run's `--job-bookmark-option` and waits for
it. The physical ranges and the metric columns are the local job's own definitions (DEFAULT_RANGES,
DEFAULT_METRICS + LOCATION_COLUMNS), passed as job arguments, so both jobs validate alike.

Glue's get_job_run reports no row counts: the script writes them to state/glue-etl/runs/<run id>.json and
the result is read from there (all zeros when the script did not write it). Glue writes one file per date
per run and never compacts older files, so partitions_compacted stays empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3

from cloud.aws.clients import aws_call, lake_s3_uri, poll_until
from cloud.aws.glue.telemetry_etl import SUMMARY_PREFIX
from cloud.interfaces import BOOKMARK_OPTIONS, BackendError, EtlJob, EtlResult, Lake, Progress, no_progress
from cloud.local.duckdb_telemetry import DEFAULT_METRICS, LOCATION_COLUMNS
from cloud.local.etl import DEFAULT_RANGES

SCRIPT_PATH = Path(__file__).resolve().parent / "glue" / "telemetry_etl.py"
SCRIPT_KEY = "scripts/glue/telemetry_etl.py"
TEMP_PREFIX = "tmp/glue/"
_ENDED = {"SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED"}
_PHASES = {"STARTING": 5, "WAITING": 5, "RUNNING": 50, "STOPPING": 90}


class GlueEtlJob(EtlJob):
    """Runs the Glue job `job_name` over an S3 lake.

    role_arn: the job's IAM role (default: IOTCAST_GLUE_ROLE_ARN). ranges: {metric: [low, high]} (default:
    the local job's DEFAULT_RANGES). timeout_min is Glue's own job timeout; poll_s how often to ask.
    """

    def __init__(
        self, region: str = "us-east-1", job_name: str = "iotcast-telemetry-etl", role_arn: str | None = None,
        glue_version: str = "4.0", worker_type: str = "G.1X", number_of_workers: int = 2, timeout_min: int = 120,
        ranges: dict[str, list[float]] | None = None, poll_s: float = 30.0,
    ) -> None:  # fmt: skip
        self.region, self.job_name, self.glue_version = region, job_name, glue_version
        self.role_arn = role_arn or os.environ.get("IOTCAST_GLUE_ROLE_ARN", "")
        self.worker_type, self.number_of_workers, self.timeout_min = worker_type, number_of_workers, timeout_min
        source = DEFAULT_RANGES if ranges is None else ranges
        self.ranges = {name: [float(low), float(high)] for name, (low, high) in source.items()}
        self.poll_s = poll_s
        self._glue = boto3.client("glue", region_name=region)

    def job_definition(self, lake: Lake) -> dict[str, Any]:
        """Return the job's definition (create_job's arguments without Name; update_job's JobUpdate)."""
        if not self.role_arn:
            raise BackendError("set IOTCAST_GLUE_ROLE_ARN (or the role_arn option) to the Glue job's IAM role")
        arguments = {
            "--job-bookmark-option": "job-bookmark-enable",
            "--lake": lake_s3_uri(lake).rstrip("/"),
            "--TempDir": lake_s3_uri(lake, TEMP_PREFIX),
            "--metrics": ",".join((*DEFAULT_METRICS, *LOCATION_COLUMNS)),
            "--ranges": json.dumps(self.ranges, sort_keys=True, separators=(",", ":")),
            "--enable-metrics": "true",
            "--enable-continuous-cloudwatch-log": "true",
        }
        return {
            "Description": "IoTCast: raw telemetry NDJSON -> curated Parquet (bookmarked)",
            "Role": self.role_arn,
            "Command": {"Name": "glueetl", "ScriptLocation": lake_s3_uri(lake, SCRIPT_KEY), "PythonVersion": "3"},
            "DefaultArguments": arguments,
            # Bookmarks assume one run at a time: a second concurrent run would read the same objects.
            "ExecutionProperty": {"MaxConcurrentRuns": 1},
            "GlueVersion": self.glue_version,
            "WorkerType": self.worker_type,
            "NumberOfWorkers": self.number_of_workers,
            "Timeout": self.timeout_min,
        }

    def run(
        self, lake: Lake, progress: Progress = no_progress, bookmark_option: str = "job-bookmark-enable"
    ) -> EtlResult:
        """Run the Glue job to its end with the bookmark option; return the counts the script recorded.

        Raises ValueError for an unknown bookmark option, BackendError when the run fails, stops or times out
        (with Glue's ErrorMessage), BackendUnavailable when Glue cannot be reached.
        """
        if bookmark_option not in BOOKMARK_OPTIONS:
            raise ValueError(f"unknown --job-bookmark-option {bookmark_option!r}; use one of {BOOKMARK_OPTIONS}")
        definition = self.job_definition(lake)
        progress(1, f"uploading the job script to {SCRIPT_KEY}")
        lake.put_bytes(SCRIPT_KEY, SCRIPT_PATH.read_bytes())
        self.ensure_job(definition)
        arguments = {"--job-bookmark-option": bookmark_option}
        run_id = aws_call(self._glue, "start_job_run", JobName=self.job_name, Arguments=arguments)["JobRunId"]
        progress(3, f"Glue job run {run_id} started")
        job_run = self._wait(run_id, progress)
        if job_run["JobRunState"] != "SUCCEEDED":
            reason = job_run.get("ErrorMessage") or "no reason given"
            raise BackendError(f"Glue job {self.job_name} run {run_id} {job_run['JobRunState'].lower()}: {reason}")
        result = self.run_result(lake, run_id)
        progress(100, f"{result.objects_processed} objects, {result.rows_written} rows written")
        return result

    def ensure_job(self, definition: dict[str, Any]) -> None:
        """Create the job, or update it when its stored definition differs."""
        found = aws_call(self._glue, "get_job", ok_codes=("EntityNotFoundException",), JobName=self.job_name)
        if found is None:
            aws_call(self._glue, "create_job", Name=self.job_name, **definition)
            return
        current = found["Job"]
        if any(current.get(name) != value for name, value in definition.items() if name != "Description"):
            aws_call(self._glue, "update_job", JobName=self.job_name, JobUpdate=definition)

    def _wait(self, run_id: str, progress: Progress) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            job_run = aws_call(self._glue, "get_job_run", JobName=self.job_name, RunId=run_id)["JobRun"]
            state = job_run["JobRunState"]
            progress(_PHASES.get(state, 95), f"Glue job run {state.lower()}")
            return job_run

        # Glue stops the run itself after timeout_min; wait a little longer than that for its verdict.
        timeout_s = self.timeout_min * 60 + 600
        return poll_until(
            read, lambda job_run: job_run["JobRunState"] in _ENDED, self.poll_s, timeout_s, f"Glue job run {run_id}"
        )

    @staticmethod
    def run_result(lake: Lake, run_id: str) -> EtlResult:
        """Return the run's counts from the summary the script wrote (zeros when it wrote none)."""
        try:
            summary = json.loads(lake.get_bytes(f"{SUMMARY_PREFIX}{run_id}.json"))
        except KeyError:
            return EtlResult()
        fields = ("objects_processed", "rows_read", "rows_written", "duplicates_dropped", "rows_rejected")
        result = EtlResult(**{name: int(summary.get(name, 0)) for name in fields})
        result.partitions_written = sorted(summary.get("partitions_written", []))
        return result

    def reset_bookmark(self, lake: Lake) -> None:
        """Reset the job's bookmark (reset_job_bookmark): the next run reads every raw object again.

        A job that never ran has no bookmark: nothing to reset. Raises BackendError when Glue refuses.
        """
        aws_call(self._glue, "reset_job_bookmark", ok_codes=("EntityNotFoundException",), JobName=self.job_name)
