"""A small process supervisor (like honcho): start named processes, prefix their output, stop them all.

Long-running processes are watched: when one exits, the supervisor stops everything and says why.
One-shot processes (setup steps, the history backfill) may exit; a non-zero exit of one is reported.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from dataplane.ports import port_open

COLOURS = itertools.cycle(["36", "33", "32", "35", "34", "31", "96", "93", "92", "95"])


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    oneshot: bool = False


@dataclass
class Running:
    spec: ProcessSpec
    process: subprocess.Popen
    pump: threading.Thread


class Supervisor:
    """Starts processes, prints their output prefixed with their name, and stops them all on exit."""

    def __init__(self, base_env: dict[str, str], cwd: str) -> None:
        self.base_env = base_env
        self.cwd = cwd
        self.running: list[Running] = []
        self.width = 10
        self._print_lock = threading.Lock()

    def say(self, name: str, line: str, colour: str = "1") -> None:
        """Print one line prefixed with a coloured process name."""
        with self._print_lock:
            sys.stdout.write(f"\033[{colour}m{time.strftime('%H:%M:%S')} {name:<{self.width}} |\033[0m {line}\n")
            sys.stdout.flush()

    def start(self, spec: ProcessSpec) -> Running:
        """Start spec's process with the base environment plus its own; return its handle."""
        env = {**self.base_env, **spec.env}
        process = subprocess.Popen(
            spec.argv,
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        colour = next(COLOURS)
        pump = threading.Thread(target=self._pump, args=(spec.name, process, colour), daemon=True)
        pump.start()
        running = Running(spec, process, pump)
        self.running.append(running)
        self.say(spec.name, f"started (pid {process.pid}): {' '.join(spec.argv)}", colour)
        return running

    def _pump(self, name: str, process: subprocess.Popen, colour: str) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.say(name, line.rstrip("\n"), colour)

    def wait_until_listening(self, running: Running, port: int, timeout: float = 60.0) -> None:
        """Block until running's port accepts connections; raise TimeoutError if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise TimeoutError(f"{running.spec.name} exited with {running.process.returncode} before listening")
            if port_open(port):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{running.spec.name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")

    def run_to_completion(self, spec: ProcessSpec) -> int:
        """Run a one-shot process, wait for it, and return its exit code."""
        running = self.start(ProcessSpec(spec.name, spec.argv, spec.env, oneshot=True))
        code = running.process.wait()
        running.pump.join(timeout=5)
        return code

    def first_exited(self) -> Running | None:
        """Return a long-running process that has exited, if any."""
        for running in self.running:
            if not running.spec.oneshot and running.process.poll() is not None:
                return running
        return None

    def watch(self) -> None:
        """Block until a long-running process exits or Ctrl-C; then return."""
        try:
            while (exited := self.first_exited()) is None:
                time.sleep(0.5)
            self.say("supervisor", f"{exited.spec.name} exited with {exited.process.returncode}: stopping everything")
        except KeyboardInterrupt:
            self.say("supervisor", "Ctrl-C: stopping everything")

    def stop_all(self, grace_s: float = 10.0) -> None:
        """Stop every process still running, newest first, each with SIGTERM then SIGKILL after grace_s.

        Newest first means the device agents stop before the ingest service, which flushes its
        buffer into the lake before the lake and the broker stop. A second Ctrl-C kills what is left.
        """
        alive = [r for r in reversed(self.running) if r.process.poll() is None]
        try:
            for running in alive:
                _signal_group(running.process, signal.SIGTERM)
                _wait_or_kill(running.process, grace_s)
        except KeyboardInterrupt:
            self.say("supervisor", "second Ctrl-C: killing what is left")
            for running in alive:
                _wait_or_kill(running.process, 0)
        self.say("supervisor", f"stopped {len(alive)} processes")


def _wait_or_kill(process: subprocess.Popen, grace_s: float) -> None:
    try:
        process.wait(timeout=max(0.1, grace_s))
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
