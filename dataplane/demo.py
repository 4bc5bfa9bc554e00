"""`python -m dataplane.demo` (what `make demo` runs): the whole local pipeline under one supervisor.

Order: pick ports (reusing a running Redis), migrate, set up the demo (admin, devices, broker config),
start the broker, lake, ingest, endpoint server, Celery worker and beat and the web server, backfill
30 days of history, queue a first pipeline cycle, start the device agents. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from dataplane.ports import free_port, port_open
from dataplane.supervisor import ProcessSpec, Supervisor

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEMO_DEVICES = ["aq-aarhus-01", "aq-copenhagen-01", "aq-odense-01"]


@dataclass
class Plan:
    state_dir: Path
    redis_port: int
    reuse_redis: bool
    broker_port: int
    endpoint_port: int
    web_port: int
    lake: str  # "s3" or "folder"
    s3_port: int

    @property
    def lake_url(self) -> str:
        if self.lake == "s3":
            return f"s3://iotcast-lake?endpoint=http://127.0.0.1:{self.s3_port}"
        return f"file://{self.state_dir / 'lake'}"


def _port(preferred: int) -> int:
    return preferred if not port_open(preferred) else free_port()


def _redis_answers(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def make_plan(args: argparse.Namespace) -> Plan:
    """Return the ports and paths this demo run uses (reuse Redis on 6379 when it answers, unless --own-redis)."""
    reuse = not args.own_redis and _redis_answers(6379)
    return Plan(
        state_dir=Path(os.environ.get("IOTCAST_STATE_DIR", REPO / "var")).resolve(),
        redis_port=6379 if reuse else _port(6379),
        reuse_redis=reuse,
        broker_port=_port(8883),
        endpoint_port=_port(8080),
        web_port=_port(args.port),
        lake=args.lake,
        s3_port=_port(8333),
    )


def child_env(plan: Plan) -> dict[str, str]:
    """Return the environment every child process gets: the plan's ports and a short demo schedule."""
    env = dict(os.environ)
    env.update(
        IOTCAST_STATE_DIR=str(plan.state_dir),
        REDIS_URL=f"redis://127.0.0.1:{plan.redis_port}/0",
        IOTCAST_BROKER_PORT=str(plan.broker_port),
        IOTCAST_ENDPOINT_SERVER_URL=f"http://127.0.0.1:{plan.endpoint_port}",
        IOTCAST_LAKE_URL=plan.lake_url,
        IOTCAST_BUFFER_INTERVAL_S=env.get("IOTCAST_BUFFER_INTERVAL_S", "10"),
        IOTCAST_PIPELINE_INTERVAL_S=env.get("IOTCAST_PIPELINE_INTERVAL_S", "120"),
        IOTCAST_TRAIN_INTERVAL_S=env.get("IOTCAST_TRAIN_INTERVAL_S", "3600"),
        AWS_ACCESS_KEY_ID=env.get("AWS_ACCESS_KEY_ID", "iotcast-local"),
        AWS_SECRET_ACCESS_KEY=env.get("AWS_SECRET_ACCESS_KEY", "iotcast-local-secret"),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="iotcast.settings",
    )
    return env


def manage(name: str, *args: str) -> ProcessSpec:
    """Return a spec running `manage.py args` under the given name."""
    return ProcessSpec(name, [PYTHON, "manage.py", *args])


def services(plan: Plan) -> list[tuple[ProcessSpec, int | None]]:
    """Return the long-running processes with the port each must open before the next starts."""
    specs: list[tuple[ProcessSpec, int | None]] = []
    if not plan.reuse_redis:
        redis_argv = ["redis-server", "--port", str(plan.redis_port), "--bind", "127.0.0.1", "--save", ""]
        specs.append((ProcessSpec("redis", redis_argv), plan.redis_port))
    # dataplane.broker restores the ingest's shared subscriptions from the persisted sessions, then execs mosquitto.
    broker_argv = [PYTHON, "-m", "dataplane.broker", str(plan.state_dir / "broker" / "mosquitto.conf")]
    specs.append((ProcessSpec("broker", broker_argv), plan.broker_port))
    if plan.lake == "s3":
        specs.append(
            (
                ProcessSpec(
                    "lake",
                    [
                        PYTHON,
                        "-m",
                        "dataplane.seaweed",
                        "--dir",
                        str(plan.state_dir / "seaweed"),
                        "--bucket",
                        "iotcast-lake",
                        "--s3-port",
                        str(plan.s3_port),
                    ],
                ),
                plan.s3_port,
            )
        )
    specs += [
        (manage("endpoint", "run_endpoint_server", "--port", str(plan.endpoint_port)), plan.endpoint_port),
        (manage("ingest", "run_ingest"), None),
        (ProcessSpec("worker", [PYTHON, "-m", "celery", "-A", "iotcast", "worker", "-l", "INFO", "-c", "2"]), None),
        (
            ProcessSpec(
                "beat",
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "iotcast",
                    "beat",
                    "-l",
                    "INFO",
                    "-s",
                    str(plan.state_dir / "celerybeat-schedule"),
                ],
            ),
            None,
        ),
        (manage("web", "runserver", f"127.0.0.1:{plan.web_port}", "--noreload"), plan.web_port),
    ]
    return specs


def agents(plan: Plan, interval: float) -> list[ProcessSpec]:
    """Return one device agent process per demo device kit."""
    return [
        ProcessSpec(
            f"agent-{index + 1}",
            [
                PYTHON,
                "-m",
                "device_agent",
                "--kit",
                str(plan.state_dir / "kits" / name),
                "--interval",
                str(interval),
                "--quiet",
            ],
        )
        for index, name in enumerate(DEMO_DEVICES)
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(plan: Plan, args: argparse.Namespace) -> int:
    """Bring the pipeline up, keep it running until Ctrl-C, SIGTERM or a crash; return the exit code."""
    # A shell may start us with SIGINT ignored (a background job); SIGTERM must stop the children too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    supervisor = Supervisor(child_env(plan), str(REPO))
    describe(supervisor, plan)
    try:
        for step in (manage("setup", "migrate", "--noinput"), manage("setup", "demo_setup")):
            if supervisor.run_to_completion(step) != 0:
                supervisor.say("supervisor", f"{' '.join(step.argv[2:])} failed: see above")
                return 1
        for spec, port in services(plan):
            running = supervisor.start(spec)
            if port is not None:
                supervisor.wait_until_listening(running, port)
        supervisor.run_to_completion(manage("backfill", "backfill", "--days", str(args.history_days)))
        supervisor.run_to_completion(manage("pipeline", "pipeline_cycle"))
        for spec in agents(plan, args.interval):
            supervisor.start(spec)
        supervisor.say(
            "supervisor",
            f"dashboard: http://127.0.0.1:{plan.web_port}/  (login: admin, password in "
            f"{plan.state_dir / 'admin-password.txt'}); Ctrl-C stops everything",
        )
        supervisor.watch()
    except KeyboardInterrupt:
        supervisor.say("supervisor", "Ctrl-C: stopping everything")
    except TimeoutError as exc:
        supervisor.say("supervisor", f"start-up failed: {exc}")
        return 1
    finally:
        supervisor.stop_all()
    return 0


def describe(supervisor: Supervisor, plan: Plan) -> None:
    """Print which ports and services this run uses, and which it reuses."""
    redis_note = "reusing the Redis already running" if plan.reuse_redis else "starting our own Redis"
    supervisor.say("supervisor", f"state dir {plan.state_dir}; {redis_note} on 127.0.0.1:{plan.redis_port}")
    supervisor.say(
        "supervisor",
        f"Mosquitto (mTLS) on 127.0.0.1:{plan.broker_port} (our own instance; any "
        f"broker on 1883 is left alone); endpoint server on :{plan.endpoint_port}; "
        f"dashboard on :{plan.web_port}; lake {plan.lake_url}",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the demo's command line."""
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8000, help="dashboard port (default 8000, or a free one)")
    parser.add_argument(
        "--lake",
        choices=["s3", "folder"],
        default=os.environ.get("IOTCAST_DEMO_LAKE", "s3"),
        help="SeaweedFS S3 object store (default) or a plain folder under the state dir",
    )
    parser.add_argument("--history-days", type=int, default=30, help="days of simulated hourly history to backfill")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between each agent's readings")
    parser.add_argument(
        "--own-redis",
        action="store_true",
        help="start a private Redis on a free port even when one answers on 6379 (keeps two demos' queues apart)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(make_plan(args), args)


if __name__ == "__main__":
    sys.exit(main())
