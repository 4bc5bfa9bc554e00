"""Shared pieces of the Glue and Athena backends: client calls with errors an operator can read, S3 URIs
of lake keys, and a poll loop with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from cloud.interfaces import BackendError, BackendUnavailable, Lake


class WaitTimeout(BackendError):
    """poll_until gave up waiting; the AWS side may still be working."""


_UNREACHABLE = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def error_code(exc: ClientError) -> str:
    """Return the AWS error code of a ClientError (e.g. EntityNotFoundException)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def aws_call(client: Any, operation: str, *, ok_codes: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any] | None:
    """Call client.operation(**kwargs) and return the response; None when AWS answers an error in ok_codes.

    ok_codes names expected errors (EntityNotFoundException for a lookup). Raises BackendUnavailable when
    the service cannot be reached, BackendError (naming the service, the operation and AWS's message)
    for any other failure.
    """
    service = client.meta.service_model.service_name
    try:
        return getattr(client, operation)(**kwargs)
    except _UNREACHABLE as exc:
        raise BackendUnavailable(f"{service} could not be reached ({operation}): {exc}") from exc
    except ClientError as exc:
        if error_code(exc) in ok_codes:
            return None
        message = exc.response.get("Error", {}).get("Message", "")
        raise BackendError(f"{service} {operation} failed: {error_code(exc)} {message}".strip()) from exc
    except BotoCoreError as exc:
        raise BackendError(f"{service} {operation} failed: {exc}") from exc


def lake_s3_uri(lake: Lake, key: str = "") -> str:
    """Return the s3:// URI of a lake key (the lake's root for ""); raise BackendError for a non-S3 lake."""
    bucket = getattr(lake, "bucket", None)
    if bucket is None:
        raise BackendError("Glue and Athena read the lake from S3: set IOTCAST_LAKE_URL to an s3:// lake")
    prefix = getattr(lake, "prefix", "")
    return f"s3://{bucket}/{prefix + '/' if prefix else ''}{key}"


def poll_until(
    read: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    poll_s: float,
    timeout_s: float,
    what: str,
) -> dict[str, Any]:
    """Call read() every poll_s seconds until done(answer); return that answer.

    Raises WaitTimeout when timeout_s passes first (the service keeps working: the message says so).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        answer = read()
        if done(answer):
            return answer
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{what} did not finish within {timeout_s:g} s; it may still be running in AWS")
        time.sleep(poll_s)
