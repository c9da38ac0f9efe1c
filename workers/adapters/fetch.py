"""Fetching a recording's audio, streaming, from the landing bucket, an allow-listed web host,
or a directory under ``CALLVAULT_FETCH_ROOT``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import urllib3

from ..domain.errors import FetchFailed, TransientError, UriNotAllowed
from ..domain.uris import AudioLocation
from ..ports import ObjectMissing, ObjectStore

CHUNK = 256 * 1024


class AudioFetcher:
    def __init__(
        self, objects: ObjectStore, *, fetch_root: Path | None, timeout_seconds: float
    ) -> None:
        self._objects = objects
        self._root = fetch_root.resolve() if fetch_root else None
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_seconds, 10), read=timeout_seconds),
            retries=urllib3.Retry(total=2, redirect=0, backoff_factor=0.2),
        )

    def open(self, where: AudioLocation) -> Iterator[bytes]:
        if where.scheme == "s3":
            return self._from_s3(where)
        if where.scheme == "file":
            return self._from_file(where)
        return self._from_http(where)

    def _from_s3(self, where: AudioLocation) -> Iterator[bytes]:
        try:
            return self._objects.get_stream(where.host, where.path)
        except ObjectMissing as exc:
            raise FetchFailed("the landing object does not exist") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError("object store unreachable") from exc

    def _from_file(self, where: AudioLocation) -> Iterator[bytes]:
        if self._root is None:
            raise UriNotAllowed("file:// recordings need CALLVAULT_FETCH_ROOT")
        real = Path(os.path.realpath(where.path))  # follows every symlink and '..'
        if not real.is_relative_to(self._root):
            raise UriNotAllowed("file:// path lies outside CALLVAULT_FETCH_ROOT")
        if not real.is_file():
            raise FetchFailed("file:// path is not an existing regular file")
        return _read_file(real)

    def _from_http(self, where: AudioLocation) -> Iterator[bytes]:
        try:
            response = self._http.request("GET", where.path, preload_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise FetchFailed(
                f"could not reach the recording's host: {type(exc).__name__}"
            ) from exc
        if response.status != 200:
            response.release_conn()
            raise FetchFailed(f"the recording's host answered HTTP {response.status}")
        return _drain(response)


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _drain(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(CHUNK)
    except urllib3.exceptions.HTTPError as exc:
        raise FetchFailed(f"download broke off: {type(exc).__name__}") from exc
    finally:
        response.release_conn()
