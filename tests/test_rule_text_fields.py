"""WHERE on text payload fields (site = 'harbour'): evaluated by the real rule, never stored; refused on metrics."""

import json

import pytest
from django.core.exceptions import ValidationError

from dataplane.ingest.rule import MAX_TEXT_FIELD_CHARS, PROCESSING_FAILED, records_from_message
from dataplane.ingest.where import compile_where
from devices.models import TopicRule

TOPIC = "dt/iotcast/sensor-7/telemetry"
NOW_MS = 1_795_000_000_123
HELP_EXAMPLE = "ozone >= 0 AND (site = 'harbour' OR particulate_matter IS NOT NULL)"


def reading(index: int, **fields) -> dict:
    return {"message_id": f"m-{index}", "timestamp": "2026-11-27T21:00:00.000Z", "ozone": 41.0, **fields}


def apply(clause: str, *readings: dict):
    return records_from_message(TOPIC, json.dumps(list(readings)).encode(), NOW_MS, compile_where(clause))


def test_the_admins_example_selects_on_a_text_field_and_does_not_store_it():
    outcome = apply(
        HELP_EXAMPLE,
        reading(1, site="harbour"),
        reading(2, site="park"),
        reading(3, site="park", particulate_matter=9.0),
        reading(4, site="harbour", ozone=-1.0),
    )
    assert [r["message_id"] for r in outcome.records] == ["m-1", "m-3"]
    assert all("site" not in r for r in outcome.records)
    assert outcome.records[1]["particulate_matter"] == 9.0 and outcome.records[0]["device_id"] == "sensor-7"
    assert outcome.filtered == 2 and outcome.errors == []


def test_the_where_names_its_text_fields():
    assert compile_where(HELP_EXAMPLE).string_fields == {"site"}
    assert compile_where("'north' <> zone AND ozone > 1").string_fields == {"zone"}
    assert compile_where("ozone > 1 AND site IS NOT NULL").string_fields == frozenset()


def test_without_such_a_where_text_is_still_processing_failed():
    for clause in ("", "ozone > 0"):
        outcome = apply(clause, reading(1, site="harbour"), reading(2))
        (error,) = outcome.errors
        assert error.error_type == PROCESSING_FAILED and error.document["errorCode"] == "InvalidMetric"
        assert [r["message_id"] for r in outcome.records] == ["m-2"]


def test_text_in_a_measurement_or_too_long_text_is_processing_failed_under_a_text_where():
    long_site = "h" * (MAX_TEXT_FIELD_CHARS + 1)
    outcome = apply("site = 'harbour'", reading(1, site="harbour", ozone="high"), reading(2, site=long_site))
    assert [e.document["errorCode"] for e in outcome.errors] == ["InvalidMetric", "InvalidMetric"]
    assert "longer than" in outcome.errors[1].document["errorMessage"] and outcome.records == []


def test_a_number_in_a_text_field_is_kept_as_a_measurement():
    outcome = apply("site = 'harbour' OR ozone > 0", reading(1, site=3))
    assert outcome.records[0]["site"] == 3


@pytest.mark.parametrize("clause", ["ozone = 'high'", "latitude <> 'n/a' OR site = 'harbour'"])
def test_a_rule_comparing_a_measurement_with_text_is_refused_at_save(clause):
    with pytest.raises(ValidationError, match="compare them with a number"):
        TopicRule(name="r", where=clause).full_clean(validate_unique=False)


def test_the_help_example_is_a_valid_rule():
    TopicRule(name="r", where=HELP_EXAMPLE).full_clean(validate_unique=False)
    assert HELP_EXAMPLE.split(" OR ")[0] in TopicRule._meta.get_field("where").help_text
