"""Lake backends: a plain folder (file://) or any S3-API object store (s3://).

Both expose the same keys, so the raw/errors/curated/datasets/models layout is identical.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from pyarrow import fs as pafs

from cloud.interfaces import BackendUnavailable, Lake, ObjectInfo


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
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)

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
