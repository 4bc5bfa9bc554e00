"""Run the real device agent as a subprocess, for the agent's tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def agent(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
    """Run `python -m device_agent ARGS` with stdin; return the finished process (output captured as text)."""
    return subprocess.run(
        [sys.executable, "-m", "device_agent", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
