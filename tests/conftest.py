"""Shared test set-up: an isolated state dir, a folder lake per test, and the service fixtures."""

import pytest

# The per-process state dir is set by the tests.isolated_state plugin (loaded with -p, before Django).

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.ingest",
    "tests.fixtures.worker",
    "tests.fixtures.endpoint",
    "tests.fixtures.pipeline",
]


def install_lake(settings, backend: str, url: str):
    """Install a lake backend class and URL in the test's settings; return the resolved lake."""
    from cloud.backends import get_backend

    backends = dict(settings.CLOUD_BACKENDS)
    backends["lake"] = {"BACKEND": backend, "OPTIONS": {"url": url}}
    settings.CLOUD_BACKENDS = backends
    settings.LAKE_URL = url
    get_backend.cache_clear()
    return get_backend("lake")


@pytest.fixture
def lake(tmp_path, settings):
    """A FolderLake in a fresh folder, installed as the 'lake' backend for the test."""
    from cloud.backends import get_backend

    yield install_lake(settings, "cloud.lake.FolderLake", f"file://{tmp_path / 'lake'}")
    get_backend.cache_clear()


@pytest.fixture
def mocked_aws(monkeypatch):
    """moto's mock_aws with fake credentials in us-east-1, for testing the aws backends' boto3 calls."""
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    with mock_aws():
        yield
