"""Settings from the environment: working defaults, loud errors on bad values; backends resolved lazily."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from iotcast.envconfig import database_from_url, env_bool, env_choice, env_int


def test_defaults_apply_when_unset(monkeypatch):
    monkeypatch.delenv("IOTCAST_X", raising=False)
    assert env_int("IOTCAST_X", 7) == 7
    assert env_bool("IOTCAST_X", True) is True
    assert env_choice("IOTCAST_X", "local", ("local", "aws")) == "local"


@pytest.mark.parametrize(
    ("reader", "value", "message"),
    [
        (lambda: env_int("IOTCAST_X", 5, minimum=1, maximum=128), "0", "outside"),
        (lambda: env_int("IOTCAST_X", 5), "five", "not an integer"),
        (lambda: env_bool("IOTCAST_X", True), "maybe", "not a boolean"),
        (lambda: env_choice("IOTCAST_X", "local", ("local", "aws")), "gcp", "must be one of local, aws"),
    ],
)
def test_bad_values_fail_loudly_naming_the_variable(monkeypatch, reader, value, message):
    monkeypatch.setenv("IOTCAST_X", value)
    with pytest.raises(ImproperlyConfigured, match=message) as raised:
        reader()
    assert "IOTCAST_X" in str(raised.value)


def test_database_urls():
    sqlite = database_from_url("sqlite:////tmp/x/iotcast.sqlite3")
    assert sqlite["ENGINE"] == "django.db.backends.sqlite3" and sqlite["NAME"] == "/tmp/x/iotcast.sqlite3"
    postgres = database_from_url("postgres://iot:secret@db.local:5433/iotcast")
    assert postgres["ENGINE"] == "django.db.backends.postgresql"
    assert (postgres["NAME"], postgres["USER"], postgres["PASSWORD"], postgres["HOST"], postgres["PORT"]) == (
        "iotcast", "iot", "secret", "db.local", "5433",
    )  # fmt: skip
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url("mysql://x/y")


def test_unknown_capability_is_refused():
    from cloud.backends import get_backend

    with pytest.raises(ImproperlyConfigured, match="unknown cloud capability 'teleport'"):
        get_backend("teleport")


def test_an_aws_backend_not_built_yet_says_which_issue_brings_it():
    from cloud.aws.pending import PendingAwsBackend

    class Pending(PendingAwsBackend):
        issue = 9

    error = Pending(region="eu-west-1").pending("crawl")
    assert isinstance(error, NotImplementedError)
    assert "Pending.crawl is not implemented yet (issue #9)" in str(error)
    assert "IOTCAST_CLOUD_BACKEND=local" in str(error)
