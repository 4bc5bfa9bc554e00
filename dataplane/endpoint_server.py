"""The endpoint server's public names (the implementation lives in dataplane.endpoint)."""

from dataplane.endpoint.registry import (
    EndpointRegistry,
    ServingError,
    Variant,
    model_error,
    parse_variants,
    validation_error,
)
from dataplane.endpoint.server import MAX_BODY, EndpointHandler, make_server, serve

__all__ = [
    "MAX_BODY",
    "EndpointHandler",
    "EndpointRegistry",
    "ServingError",
    "Variant",
    "make_server",
    "model_error",
    "parse_variants",
    "serve",
    "validation_error",
]
