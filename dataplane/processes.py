"""Helpers shared by the launchers of the data-plane servers (Mosquitto, SeaweedFS)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Stop a child process: SIGTERM, then SIGKILL after timeout seconds; a stopped one is left alone."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(log_path: Path, lines: int = 20) -> str:
    """Return the last non-empty lines of a server's log joined with ' | ', for error messages."""
    try:
        text = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return " | ".join(line for line in text[-lines:] if line.strip()) or "(no output)"
