"""The device kit: the folder a device needs to connect (certificate, key, CA, kit.json, README.txt).

Written by the control plane (provision_device, the REST API's caller, the test fixtures) and read by
the agent, so both sides share this one module. Stdlib only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CERTIFICATE_FILE = "certificate.pem.crt"
PRIVATE_KEY_FILE = "private.pem.key"
CA_FILE = "ca.pem"
META_FILE = "kit.json"
README_FILE = "README.txt"
KIT_FILES = (CERTIFICATE_FILE, PRIVATE_KEY_FILE, CA_FILE, META_FILE)


class KitError(Exception):
    """The kit folder is missing, incomplete or malformed; the message says what to fix."""


def telemetry_topic(thing_name: str) -> str:
    """Return the topic a thing publishes telemetry on (the only one its certificate may write)."""
    return f"dt/iotcast/{thing_name}/telemetry"


def agent_command(kit_dir: str | Path) -> str:
    """Return the shell command that starts the agent with this kit."""
    return f"python -m device_agent --kit {kit_dir}"


@dataclass(frozen=True)
class Kit:
    directory: Path
    thing_name: str
    host: str
    port: int
    topic: str
    client_id: str
    command: str
    latitude: float | None = None
    longitude: float | None = None

    @property
    def certificate_path(self) -> Path:
        return self.directory / CERTIFICATE_FILE

    @property
    def private_key_path(self) -> Path:
        return self.directory / PRIVATE_KEY_FILE

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE


def kit_metadata(
    thing_name: str, host: str, port: int, kit_dir: str | Path, latitude: float | None, longitude: float | None
) -> dict:
    """Return kit.json's content (also what the REST API returns beside the PEM texts)."""
    return {
        "thing_name": thing_name,
        "host": host,
        "port": port,
        "topic": telemetry_topic(thing_name),
        "client_id": thing_name,
        "command": agent_command(kit_dir),
        "latitude": latitude,
        "longitude": longitude,
    }


def write_kit(
    out_dir: Path,
    *,
    thing_name: str,
    host: str,
    port: int,
    certificate_pem: str,
    private_key_pem: str,
    ca_pem: str,
    latitude: float | None = None,
    longitude: float | None = None,
    command_dir: str | Path | None = None,
) -> Path:
    """Write the kit into out_dir (created; the key file is 0600) and return out_dir.

    command_dir is the folder the README's start command names (default out_dir; e.g. ./<name>-kit
    for a kit that will be zipped and moved). Raises KitError when out_dir already holds a kit:
    overwriting would destroy a working key.
    """
    out_dir = Path(out_dir).resolve()
    if any((out_dir / name).exists() for name in KIT_FILES):
        raise KitError(f"{out_dir} already holds a device kit; choose an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = kit_metadata(thing_name, host, port, command_dir or out_dir, latitude, longitude)
    (out_dir / CERTIFICATE_FILE).write_text(certificate_pem)
    fd = os.open(out_dir / PRIVATE_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key_pem)
    (out_dir / CA_FILE).write_text(ca_pem)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (out_dir / README_FILE).write_text(_readme(meta))
    return out_dir


def _readme(meta: dict) -> str:
    return (
        f"IoTCast device kit for {meta['thing_name']}\n\n"
        f"Start the simulated device (publishes telemetry every 5 s to {meta['topic']} on "
        f"{meta['host']}:{meta['port']}):\n\n"
        f"    {meta['command']}\n\n"
        "Options: --interval SECONDS, --count N, --seed N; other sources: --replay FILE --speed N, --stdin; "
        "--batch N; readings wait in an on-disk queue (--queue-dir, --queue-max) until the broker acknowledges "
        "them (see python -m device_agent --help).\n"
        f"Keep {PRIVATE_KEY_FILE} secret: it is this device's identity and cannot be downloaded again.\n"
    )


def load_kit(directory: str | Path) -> Kit:
    """Return the kit in directory; raise KitError naming the missing file or bad field."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise KitError(f"kit folder {directory} does not exist")
    missing = [name for name in KIT_FILES if not (directory / name).is_file()]
    if missing:
        raise KitError(f"kit folder {directory} lacks {', '.join(missing)}")
    try:
        meta = json.loads((directory / META_FILE).read_text())
        return Kit(
            directory=directory,
            thing_name=str(meta["thing_name"]),
            host=str(meta["host"]),
            port=int(meta["port"]),
            topic=str(meta.get("topic") or telemetry_topic(meta["thing_name"])),
            client_id=str(meta.get("client_id") or meta["thing_name"]),
            command=str(meta.get("command") or agent_command(directory)),
            latitude=_optional_float(meta.get("latitude")),
            longitude=_optional_float(meta.get("longitude")),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise KitError(f"{directory / META_FILE} is malformed ({type(exc).__name__}: {exc})") from exc


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)
