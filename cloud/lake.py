"""Lake backends: a plain folder (file://) or any S3-API object store (s3://).

Both expose the same keys, so the raw/errors/curated/datasets/models layout is identical.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from pyarrow import fs as pafs

from cloud.interfaces import BackendError, BackendUnavailable, Lake, ObjectInfo


class FolderLake(Lake):
    """A lake in a local folder; writes are atomic (temp file + fsync + rename)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in {"file", ""}:
            raise ValueError(f"FolderLake needs a file:// URL, got {url!r}")
        self.url = url
        self.root = Path(parsed.path).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"key {key!r} escapes the lake")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
            try:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
        os.replace(handle.name, path)
        # The rename itself is only durable once the directory entry is on disk.
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise KeyError(key) from exc

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.exists():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".tmp-"):
                found.append(ObjectInfo(key=key, size=path.stat().st_size))
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return pafs.LocalFileSystem(), str(self.root)

    @contextmanager
    def local_paths(self, keys: list[str]) -> Iterator[list[Path]]:
        yield [self._path(key) for key in keys]

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise BackendUnavailable(f"lake folder {self.root} is not writable")


def s3_lake_url(bucket: str, prefix: str = "", endpoint: str | None = None, region: str | None = None) -> str:
    """Return an s3:// lake URL for S3Lake: s3://bucket/prefix?endpoint=...&region=... (no endpoint = AWS)."""
    query = {name: value for name, value in (("endpoint", endpoint), ("region", region)) if value}
    path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
    return f"s3://{bucket}{path}" + (f"?{urlencode(query, safe=':/')}" if query else "")


class S3Lake(Lake):
    """A lake in an S3 bucket (AWS, or any S3-API store such as SeaweedFS when the URL names an endpoint).

    The URL is s3://bucket[/prefix][?endpoint=http://host:port&region=...]; credentials come from the
    usual boto3 chain (AWS_ACCESS_KEY_ID, profiles, instance roles). With an endpoint, addressing is
    path-style and a missing bucket is created on first write (a local store has no console to do it).
    """

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"S3Lake needs an s3://bucket[/prefix] URL, got {url!r}")
        query = parse_qs(parsed.query)
        self.url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint = query.get("endpoint", [None])[0]
        default_region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.region = query.get("region", [default_region])[0]
        self._session = boto3.session.Session(region_name=self.region)
        self._client = self._session.client("s3", endpoint_url=self.endpoint, config=self._client_config())
        self._bucket_ready = self.endpoint is None  # on AWS the bucket is provisioned, never created here

    def _client_config(self) -> BotoConfig:
        addressing = {"addressing_style": "path"} if self.endpoint else {}
        # A local store that is down should fail fast, not after botocore's long default retries.
        return BotoConfig(
            s3=addressing, connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
        )

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid lake key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with _s3_errors(f"create bucket {self.bucket}"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in _MISSING:
                    raise
                self._create_bucket()
        self._bucket_ready = True

    def _create_bucket(self) -> None:
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # Another process (a second ingest worker) may have won the race.
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def put_bytes(self, key: str, data: bytes) -> None:
        full_key = self._key(key)
        self._ensure_bucket()
        with _s3_errors(f"put {key}"):
            self._client.put_object(Bucket=self.bucket, Key=full_key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        with _s3_errors(f"get {key}"):
            try:
                return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except ClientError as exc:
                if _error_code(exc) in _MISSING:
                    raise KeyError(key) from exc
                raise

    def exists(self, key: str) -> bool:
        with _s3_errors(f"head {key}"):
            try:
                self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if _error_code(exc) in _MISSING:
                    return False
                raise
        return True

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[ObjectInfo] = []
        with _s3_errors(f"list {prefix}"):
            try:
                for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                    # Keys ending in / are directory markers (pyarrow writes them), not objects.
                    contents = [o for o in page.get("Contents", []) if not o["Key"].endswith("/")]
                    found.extend(ObjectInfo(key=o["Key"][strip:], size=o["Size"]) for o in contents)
            except ClientError as exc:
                if _error_code(exc) not in _MISSING:
                    raise
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        with _s3_errors(f"delete {key}"):
            try:
                self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if _error_code(exc) not in _MISSING:
                    raise

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        options: dict[str, Any] = {"region": self.region}
        if self.endpoint:
            endpoint = urlparse(self.endpoint)
            options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "http")
        credentials = self._session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
        base = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return pafs.S3FileSystem(**options), base

    @contextmanager
    def local_paths(self, keys: list[str]) -> Iterator[list[Path]]:
        with tempfile.TemporaryDirectory(prefix="iotcast-lake-") as folder:
            paths = []
            for key in keys:
                path = Path(folder) / self._key(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.get_bytes(key))
                paths.append(path)
            yield paths

    def ping(self) -> None:
        if self.endpoint:
            self._ensure_bucket()
            return
        with _s3_errors(f"reach bucket {self.bucket}"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                raise BackendUnavailable(f"lake bucket {self.bucket} is not reachable: {_error_code(exc)}") from exc


_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _s3_errors(action: str) -> Iterator[None]:
    """Translate botocore failures: unreachable store -> BackendUnavailable, other errors -> BackendError."""
    try:
        yield
    except _CONNECTION_ERRORS as exc:
        raise BackendUnavailable(f"lake object store unreachable ({action}): {exc}") from exc
    except NoCredentialsError as exc:
        raise BackendError(
            f"no AWS credentials for the lake ({action}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        ) from exc
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        raise BackendError(f"lake {action} failed: {_error_code(exc)} {message}".strip()) from exc
