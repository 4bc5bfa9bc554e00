"""Shared test set-up: an isolated state dir, a folder lake per test, and the service fixtures."""

import os
import tempfile
from pathlib import Path

import pytest

# One state dir per pytest process, so that parallel runs never share a database or lake.
_STATE = Path(tempfile.mkdtemp(prefix="iotcast-test-"))
# Read by iotcast.settings at import: keep tests away from the demo's data.
os.environ["IOTCAST_STATE_DIR"] = str(_STATE)
os.environ.setdefault("IOTCAST_LAKE_URL", f"file://{_STATE / 'lake'}")

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.ingest",
    "tests.fixtures.worker",
    "tests.fixtures.endpoint",
]


@pytest.fixture
def lake(tmp_path, settings):
    """A FolderLake in a fresh folder, installed as the 'lake' backend for the test."""
    from cloud.backends import get_backend

    url = f"file://{tmp_path / 'lake'}"
    backends = dict(settings.CLOUD_BACKENDS)
    backends["lake"] = {"BACKEND": "cloud.lake.FolderLake", "OPTIONS": {"url": url}}
    settings.CLOUD_BACKENDS = backends
    settings.LAKE_URL = url
    get_backend.cache_clear()
    yield get_backend("lake")
    get_backend.cache_clear()
