"""The OpenAPI schema is generated from the DRF views, valid, and free of warnings."""

import pytest
import yaml
from django.core.management import call_command


def test_openapi_schema_is_valid_without_warnings(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    paths = schema["paths"]
    for route in ("/api/v1/devices/", "/api/v1/devices/{device_id}/readings", "/api/v1/endpoints/{name}/invocations"):
        assert route in paths, sorted(paths)
    assert "tokenAuth" in schema["components"]["securitySchemes"]


@pytest.mark.django_db
def test_the_schema_is_served(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi" in response.content
