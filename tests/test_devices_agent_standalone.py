"""The device agent stands alone: no Django, no project package, and Python 3.10 (its requires-python)."""

import glob
import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from device_agent.simulator import AirQualitySimulator
from device_agent.sources import parse_timestamp
from device_agent.telemetry import format_timestamp

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["kit", "disk_queue", "simulator", "telemetry", "sources", "agent", "cli", "__main__"]

# Run in a child interpreter whose sys.path holds only a folder with device_agent in it; importing
# django (or any project package) fails there. STUB_AWS stands in for awscrt/awsiot where absent.
SCRIPT = """
import json, sys, types
sys.path[:] = [p for p in sys.path if p not in ("", ".", ROOT)]
sys.path.insert(0, HOME)
for name in ("django", "rest_framework", "cloud", "dataplane", "devices", "iotcast"):
    sys.modules[name] = None
if STUB_AWS:
    crt, exc, iot = (types.ModuleType(n) for n in ("awscrt", "awscrt.exceptions", "awsiot"))
    exc.AwsCrtError = type("AwsCrtError", (Exception,), {})
    crt.mqtt, crt.exceptions, iot.mqtt_connection_builder = types.ModuleType("awscrt.mqtt"), exc, types.ModuleType("b")
    sys.modules.update({"awscrt": crt, "awscrt.mqtt": crt.mqtt, "awscrt.exceptions": exc, "awsiot": iot,
                        "awsiot.mqtt_connection_builder": iot.mqtt_connection_builder})
import importlib
for module in MODULES:
    importlib.import_module("device_agent." + module if module != "__main__" else "device_agent.cli")
from datetime import datetime
from device_agent.sources import parse_timestamp
from device_agent.telemetry import format_timestamp
from device_agent.simulator import AirQualitySimulator
when = parse_timestamp("2026-11-27T21:00:00.250Z")
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "parsed": format_timestamp(when),
    "epoch": format_timestamp(parse_timestamp(1795813200)),
    "reading": AirQualitySimulator(7, 56.1, 10.2).reading_at(datetime(2026, 7, 1, 14)),
    "django": "django" in sys.modules and sys.modules["django"] is not None,
}))
"""


def _run(python: str, home: Path, stub_aws: bool) -> dict:
    (home / "device_agent").symlink_to(ROOT / "device_agent", target_is_directory=True)
    constants = f"ROOT={str(ROOT)!r}\nHOME={str(home)!r}\nSTUB_AWS={stub_aws}\nMODULES={MODULES!r}\n"
    result = subprocess.run(
        [python, "-I", "-c", constants + SCRIPT], cwd=home, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _expected() -> dict:
    return {
        "parsed": format_timestamp(parse_timestamp("2026-11-27T21:00:00.250+00:00")),
        "epoch": format_timestamp(datetime.fromisoformat("2026-11-27T21:00:00+00:00")),
        "reading": AirQualitySimulator(7, 56.1, 10.2).reading_at(datetime(2026, 7, 1, 14)),
        "django": False,
    }


def test_every_agent_module_imports_without_django_or_the_project(tmp_path):
    found = _run(sys.executable, tmp_path, stub_aws=False)
    assert found.pop("python") == list(sys.version_info[:2])
    assert found == _expected()


def _python310() -> str | None:
    """Return a working Python 3.10 interpreter (pyenv's shims may name one that is not selected), or None."""
    pyenv = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python3.10")))
    for candidate in [*pyenv, shutil.which("python3.10")]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(_python310() is None, reason="no Python 3.10 interpreter on this machine")
def test_the_agent_runs_on_python_3_10_as_its_pyproject_promises(tmp_path):
    found = _run(_python310(), tmp_path, stub_aws=True)  # -I: no site-packages, so awscrt is stubbed
    assert found.pop("python") == [3, 10]
    assert found == _expected()
    pyproject = (ROOT / "device_agent" / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.10"' in pyproject
