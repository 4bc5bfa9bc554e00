"""Command line of the device agent: python -m device_agent --kit DIR [--interval S] [--count N] [--seed N]."""

from __future__ import annotations

import argparse
import signal
import sys

from device_agent.agent import AgentError, run
from device_agent.kit import KitError, load_kit
from device_agent.simulator import AirQualitySimulator, seed_for

MIN_INTERVAL_S = 0.25


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from exc
    if value < MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL_S} s, got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (its --help documents every option)."""
    parser = argparse.ArgumentParser(
        prog="python -m device_agent",
        description=(
            "Simulated IoTCast air-quality sensor. Connects to the broker named in the kit with the kit's "
            "X.509 certificate (mutual TLS) and publishes one JSON reading per interval at QoS 1 to "
            "dt/iotcast/<thing>/telemetry. Ctrl-C stops it and reports how many messages were acknowledged."
        ),
    )
    parser.add_argument(
        "--kit",
        required=True,
        metavar="DIR",
        help="device kit folder (certificate.pem.crt, private.pem.key, ca.pem, kit.json), "
        "as written by `manage.py provision_device`",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=5.0,
        metavar="SECONDS",
        help=f"seconds between readings (default 5, minimum {MIN_INTERVAL_S})",
    )
    parser.add_argument(
        "--count", type=_positive, default=None, metavar="N", help="stop after N readings (default: run until Ctrl-C)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="simulator seed (default: derived from the thing name, so a device always simulates the same site)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the start and end lines, not every reading")
    return parser


def _raise_interrupt(signum: int, frame: object) -> None:
    # SIGTERM (e.g. from a process manager) stops as cleanly as Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the agent; return the process exit status (0 done, 1 could not run, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    try:
        kit = load_kit(args.kit)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seed = args.seed if args.seed is not None else seed_for(kit.thing_name)
    simulator = AirQualitySimulator(seed, kit.latitude, kit.longitude)
    signal.signal(signal.SIGTERM, _raise_interrupt)

    def report(line: str) -> None:
        if not args.quiet or not line.startswith("#"):
            print(line, flush=True)

    try:
        publisher = run(kit, simulator, args.interval, args.count, report)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted before connecting; sent 0 message(s)", file=sys.stderr)
        return 130
    print(f"sent {publisher.acknowledged} message(s) to {kit.topic}", flush=True)
    return 0 if publisher.failed == 0 else 1
