"""Where attachment bytes live, behind one interface: a local directory (the default, `make
run` keeps it under `.local/attachments`) or an S3-compatible bucket (production). Both stream:
a file is never held whole in memory."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import obstore
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.store import S3Store

CHUNK_BYTES = 256 * 1024
# S3 multipart: 5 MiB parts (S3's minimum), at most 2 in flight, so an upload holds ~10 MiB
# of a file in memory at most (obstore's default of 12 could hold a whole 25 MiB file).
S3_PART_BYTES = 5 * 1024 * 1024
S3_PARTS_IN_FLIGHT = 2


class StorageError(Exception):
    """The store failed (unreachable, refused): the caller answers 503, nothing is recorded."""


@dataclass(frozen=True)
class StoredFile:
    """An opened file: its size and its bytes as they are read."""

    size: int
    chunks: AsyncIterator[bytes]


class FileStorage(Protocol):
    """Put, get, delete by key. `put` is durable when it returns; `delete` of a missing key is
    not an error (deletions are retried); `get` of a missing key raises FileNotFoundError."""

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None: ...

    async def get(self, key: str) -> StoredFile: ...

    async def delete(self, key: str) -> None: ...


def _checked(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\\" in key or "\x00" in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


class LocalStorage:
    """Files under one directory. A put writes a temporary file, fsyncs it and renames it into
    place (then fsyncs the directory), so a key is either absent or whole, even after a crash."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        path = self._path(key)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            handle = await asyncio.to_thread(open, temporary, "wb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(_flush, handle)
            finally:
                handle.close()
            await asyncio.to_thread(_publish, temporary, path)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        finally:
            temporary.unlink(missing_ok=True)

    async def get(self, key: str) -> StoredFile:
        path = self._path(key)
        handle = await asyncio.to_thread(open, path, "rb")  # FileNotFoundError when missing
        size = os.fstat(handle.fileno()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                    yield chunk
            finally:
                handle.close()

        return StoredFile(size, chunks())

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._path(key).unlink, missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc


def _flush(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _publish(temporary: Path, path: Path) -> None:
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class S3Storage:
    """An S3-compatible bucket through obstore (Rust's object_store: streaming multipart
    uploads, retries with backoff). Credentials come from the settings or the usual AWS_*
    environment variables."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if endpoint:
            options["endpoint"] = endpoint
            options["virtual_hosted_style_request"] = False
        if region:
            options["region"] = region
        if access_key_id and secret_access_key:
            options["access_key_id"] = access_key_id
            options["secret_access_key"] = secret_access_key
        allow_http = bool(endpoint and endpoint.startswith("http://"))
        self._store = S3Store(bucket, client_options={"allow_http": allow_http}, **options)

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        try:
            await obstore.put_async(
                self._store,
                _checked(key),
                chunks,
                chunk_size=S3_PART_BYTES,
                max_concurrency=S3_PARTS_IN_FLIGHT,
            )
        except (OSError, RuntimeError, ObjectStoreError) as exc:
            raise StorageError(f"cannot store {key}: {exc}") from exc

    async def get(self, key: str) -> StoredFile:
        try:
            result = await obstore.get_async(self._store, _checked(key))
        except FileNotFoundError:
            raise
        except (OSError, RuntimeError, ObjectStoreError) as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                yield bytes(chunk)

        return StoredFile(int(result.meta["size"]), chunks())

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, _checked(key))
        except FileNotFoundError:
            return
        except (OSError, RuntimeError, ObjectStoreError) as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc
