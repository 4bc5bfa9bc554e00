"""Command line of the device agent: python -m device_agent --kit DIR [source] [delivery options]."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from device_agent.agent import Agent, AgentError, Options, Stats
from device_agent.disk_queue import DiskQueue, QueueError
from device_agent.kit import Kit, KitError, load_kit
from device_agent.simulator import AirQualitySimulator, seed_for
from device_agent.sources import FieldMap, ReplaySource, SimulatedSource, SourceError, StdinSource

MIN_INTERVAL_S = 0.25
MAX_BATCH = 1000
DEFAULT_QUEUE_MAX = 100_000


def _number(minimum: float, kind: type = float):
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from exc
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def _mapping(text: str) -> tuple[str, str]:
    column, sep, field = text.partition("=")
    if not sep or not column.strip() or not field.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not COLUMN=FIELD (or COLUMN=- to ignore the column)")
    return column.strip(), field.strip()


def _batch(text: str) -> int:
    value = _number(1, int)(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH}, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (its --help documents every option)."""
    parser = argparse.ArgumentParser(
        prog="python -m device_agent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "IoTCast device agent. Connects to the broker named in the kit with the kit's X.509 certificate\n"
            "(mutual TLS) and publishes JSON readings at QoS 1 to dt/iotcast/<thing>/telemetry. Readings\n"
            "go through an on-disk queue and leave it only after the broker's acknowledgement, so readings\n"
            "taken while the broker is unreachable are sent after reconnecting. Ctrl-C or SIGTERM stops it."
        ),
        epilog=(
            "exit status: 0 every reading delivered; 1 could not run (a one-line reason on stderr: bad kit,\n"
            "unreachable broker, rejected certificate) or readings left queued; 2 bad arguments; 130\n"
            "interrupted before connecting.\n\n"
            "examples:\n"
            "  python -m device_agent --kit KIT --interval 5\n"
            "  python -m device_agent --kit KIT --replay readings.csv --speed 60 --map pm10=-\n"
            "  sensor-reader | python -m device_agent --kit KIT --stdin --batch 20 --linger 2\n"
        ),
    )
    parser.add_argument(
        "--kit",
        required=True,
        metavar="DIR",
        help="device kit folder (certificate.pem.crt, private.pem.key, ca.pem, kit.json), "
        "as written by `manage.py provision_device` or downloaded from the Fleet page",
    )
    source = parser.add_argument_group("source (default: the simulated air-quality sensor)")
    choice = source.add_mutually_exclusive_group()
    choice.add_argument(
        "--replay",
        metavar="FILE",
        help="replay a CSV file (with a header line) or an NDJSON file (.ndjson/.jsonl/.json) in file order; "
        "each line needs a timestamp (ISO-8601, or epoch seconds or milliseconds), which the reading keeps",
    )
    choice.add_argument(
        "--stdin",
        action="store_true",
        help="read one JSON object per line from stdin; message_id and timestamp are filled in when absent",
    )
    source.add_argument(
        "--speed",
        type=_number(0),
        default=1.0,
        metavar="N",
        help="with --replay: play N times faster than the file's timestamps (default 1 = real time, "
        "0 = as fast as possible)",
    )
    source.add_argument(
        "--map",
        type=_mapping,
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="with --replay or --stdin: publish COLUMN as telemetry FIELD, or ignore it with COLUMN=-; repeatable. "
        "Known names are mapped already (o3, pm25, pm2.5, co, so2, no2, lat, lon, time, ts, id, ...); "
        "other numeric columns are published under their own snake_case name",
    )
    source.add_argument(
        "--interval",
        type=_interval,
        default=5.0,
        metavar="SECONDS",
        help=f"simulated sensor: seconds between readings (default 5, minimum {MIN_INTERVAL_S})",
    )
    source.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="simulated sensor: seed (default: derived from the thing name, so a device always simulates one site)",
    )
    source.add_argument(
        "--count",
        type=_number(1, int),
        default=None,
        metavar="N",
        help="stop after N readings (default: until Ctrl-C, or the end of the file or of stdin)",
    )
    delivery = parser.add_argument_group("delivery")
    delivery.add_argument(
        "--batch",
        type=_batch,
        default=1,
        metavar="N",
        help="send up to N readings per message as a JSON array (the IoT rule's batchMode; never over 128 KB). "
        f"Default 1: one JSON object per message. At most {MAX_BATCH}",
    )
    delivery.add_argument(
        "--linger",
        type=_number(0),
        default=1.0,
        metavar="SECONDS",
        help="with --batch: how long a partial batch waits for more readings (default 1)",
    )
    delivery.add_argument(
        "--queue-dir",
        metavar="DIR",
        default=None,
        help="folder of the on-disk queue (queue.sqlite3; default KIT/queue). Readings still queued when the "
        "agent stops are sent by its next start",
    )
    delivery.add_argument(
        "--queue-max",
        type=_number(1, int),
        default=DEFAULT_QUEUE_MAX,
        metavar="N",
        help=f"most readings the queue holds (default {DEFAULT_QUEUE_MAX}); when full, the oldest are dropped "
        "and counted",
    )
    delivery.add_argument(
        "--keep-trying",
        action="store_true",
        help="start even when the broker is unreachable (queueing readings and retrying with backoff) instead of "
        "failing at once; a rejected certificate still stops the agent",
    )
    delivery.add_argument(
        "--reconnect-min",
        type=_number(0.01),
        default=1.0,
        metavar="SECONDS",
        help="backoff: the wait after the first failed attempt is random in [0, this] (default 1); it doubles "
        "per attempt (exponential backoff with full jitter)",
    )
    delivery.add_argument(
        "--reconnect-max",
        type=_number(0.01),
        default=60.0,
        metavar="SECONDS",
        help="backoff: the longest wait between attempts (default 60)",
    )
    delivery.add_argument(
        "--drain-timeout",
        type=_number(0),
        default=30.0,
        metavar="SECONDS",
        help="once the source has ended: how long to keep trying to deliver what is queued (default 30)",
    )
    parser.add_argument("--quiet", action="store_true", help="print no line per reading, only connection and end lines")
    return parser


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from exc
    if value < MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL_S} s, got {text}")
    return value


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def make_source(args: argparse.Namespace, kit: Kit):
    """Return the source the arguments ask for; raise SourceError when it cannot be opened."""
    mapping = FieldMap(dict(args.map))
    if args.replay:
        return ReplaySource(args.replay, args.speed, mapping, _warn)
    if args.stdin:
        return StdinSource(sys.stdin, mapping, _warn)
    seed = args.seed if args.seed is not None else seed_for(kit.thing_name)
    return SimulatedSource(AirQualitySimulator(seed, kit.latitude, kit.longitude), args.interval)


def main(argv: list[str] | None = None) -> int:
    """Run the agent; return the exit status (0 done, 1 could not run or left readings queued, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    try:
        kit = load_kit(args.kit)
        source = make_source(args, kit)
        disk_queue = DiskQueue(Path(args.queue_dir) if args.queue_dir else kit.directory / "queue", args.queue_max)
    except (KitError, SourceError, QueueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    options = Options(
        batch=args.batch,
        linger=args.linger,
        drain_timeout=args.drain_timeout,
        keep_trying=args.keep_trying,
        reconnect_min=args.reconnect_min,
        reconnect_max=max(args.reconnect_max, args.reconnect_min),
        count=args.count,
    )

    def report(line: str) -> None:
        if not args.quiet or not line.startswith("#"):
            print(line, flush=True)

    agent = Agent(kit, source, disk_queue, options, report, _warn)
    # Ctrl-C and SIGTERM ask the agent to stop at its next turn: an exception raised at an arbitrary
    # point could land inside a lock's bookkeeping and break it ("release unlocked lock").
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: agent.request_stop())
    try:
        stats = agent.run()
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; {len(disk_queue)} reading(s) stay queued in {disk_queue.directory}", file=sys.stderr)
        return 130
    finally:
        disk_queue.close()
    return _summary(agent, stats, kit, args)


def _summary(agent: Agent, stats: Stats, kit: Kit, args: argparse.Namespace) -> int:
    """Print the end lines; return 0 when everything was delivered, else 1."""
    batches = f" ({stats.acknowledged} reading(s), up to {args.batch} per message)" if args.batch > 1 else ""
    print(f"sent {stats.messages} message(s) to {kit.topic}{batches}", flush=True)
    if agent.source.skipped:
        _warn(f"skipped {agent.source.skipped} bad line(s)")
    if agent.queue.dropped:
        _warn(f"dropped {agent.queue.dropped} oldest reading(s): the queue was full (--queue-max {args.queue_max})")
    if agent.producer_error is not None:
        _warn(f"error: the source failed: {agent.producer_error}")
    left = len(agent.queue)
    if left:
        _warn(
            f"error: {left} unacknowledged reading(s) stay queued in {agent.queue.directory}; the next start sends them"
        )
    return 1 if left or agent.producer_error is not None else 0
