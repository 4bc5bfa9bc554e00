"""A pytest plugin loaded with -p (pyproject addopts) before pytest-django reads the settings.

It gives each pytest process its own state dir (database, lake, CA), so that parallel runs never share them.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

STATE_DIR = Path(tempfile.mkdtemp(prefix="iotcast-test-"))
atexit.register(shutil.rmtree, STATE_DIR, ignore_errors=True)
os.environ["IOTCAST_STATE_DIR"] = str(STATE_DIR)
os.environ["IOTCAST_LAKE_URL"] = f"file://{STATE_DIR / 'lake'}"
os.environ.pop("DATABASE_URL", None)
