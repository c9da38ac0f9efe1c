"""The S3 object store through the MinIO SDK (versitygw locally, any S3 server in production).

Every library error is translated here and nowhere else: an absent object is
:class:`ObjectMissing` (a fact, not a failure); a store that is away, busy or answering 5xx/429
(XML or not) is :class:`TransientError`; a refusal that a retry cannot cure (AccessDenied,
NoSuchBucket, InvalidArgument, a key too long, another 4xx) is :class:`StoreRejected`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio import datatypes as minio_datatypes
from minio import time as minio_time
from minio.commonconfig import ENABLED, GOVERNANCE
from minio.datatypes import Object, Part
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import ObjectWriteResult, genheaders
from minio.objectlockconfig import ObjectLockConfig
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from ..app.ports.objects import ObjectMissing, ObjectVersion, VersionRef
from ..app.retry import RetryPolicy
from ..domain.errors import StoreRejected, TransientError

T = TypeVar("T")
PART_SIZE = 8 * 1024 * 1024
DELETE_BATCH = 1000  # S3 deletes at most 1000 objects per request
READ_CHUNK = 256 * 1024
_FRACTION = re.compile(r"\.(\d{6})\d+Z$")
_MISSING = {"NoSuchKey", "NoSuchVersion", "NotFound", "NoSuchUpload"}
_TRANSIENT = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "OperationAborted",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "XMinioServerNotInitialized",
    "XMinioReadQuorum",
    "XMinioWriteQuorum",
    # versitygw's POSIX backend, when an upload races the removal of an emptied folder
    "ExistingObjectIsDirectory",
}
_LOCKED = {"AccessDenied", "ObjectLocked", "InvalidRequest"}


def _tolerant_iso8601utc(value: str | None) -> datetime | None:
    """minio-py parses at most microseconds; some S3 servers (versitygw) send nanoseconds in
    delete markers' LastModified, which would make listing object versions fail."""
    return minio_time.from_iso8601utc(_FRACTION.sub(r".\1Z", value) if value else value)


def _accept_nanosecond_timestamps() -> None:
    """Install the tolerant parser where the SDK's XML readers look it up (idempotent)."""
    minio_datatypes.from_iso8601utc = _tolerant_iso8601utc  # type: ignore[attr-defined]


def translate(error: BaseException, what: str) -> Exception:
    """The project's error for a library error met while doing ``what``."""
    if isinstance(error, S3Error):
        code = error.code or "unknown"
        if code in _MISSING or (code == "NoSuchBucket" and what.startswith("read")):
            return ObjectMissing(f"{what}: {code}")
        if code in _TRANSIENT:
            return TransientError(f"object store busy ({what}): {code}")
        return StoreRejected(f"object store refused {what}: {code}")
    if isinstance(error, InvalidResponseError | ServerError):
        status = _status_of(error)
        if status >= 500 or status == 429:
            return TransientError(f"object store answered HTTP {status} ({what})")
        return StoreRejected(f"object store answered HTTP {status} ({what})")
    if isinstance(error, urllib3.exceptions.HTTPError | OSError):
        return TransientError(f"object store unreachable ({what}): {type(error).__name__}")
    if isinstance(error, MinioException | ValueError):
        return StoreRejected(f"object store client refused {what}: {type(error).__name__}")
    return error if isinstance(error, Exception) else RuntimeError(str(error))


def _status_of(error: InvalidResponseError | ServerError) -> int:
    if isinstance(error, ServerError):
        return error.status_code
    return int(getattr(error, "_code", 0) or 0)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (S3Error, InvalidResponseError, ServerError, MinioException) as exc:
        raise translate(exc, what) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise translate(exc, what) from exc


class S3Store:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str,
        *,
        timeout: float = 60,
        retry: RetryPolicy | None = None,
        ca_bundle: str | None = None,
        max_connections: int = 16,
        public_endpoint: str | None = None,
    ) -> None:
        _accept_nanosecond_timestamps()
        url = urlsplit(endpoint)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=timeout),
            retries=False,  # retries live in one place: RetryPolicy, step by step
            maxsize=max_connections,
            ca_certs=ca_bundle,
            cert_reqs="CERT_REQUIRED" if url.scheme == "https" else None,
        )
        self._client = Minio(
            url.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=url.scheme == "https",
            region=region,
            http_client=http,
        )
        # Presigned URLs are signed for the host that will be asked: the address a DSR portal
        # reaches (a public name, a proxy), which may differ from the one callvault uses.
        self._signer = self._client
        if public_endpoint is not None:
            public = urlsplit(public_endpoint)
            self._signer = Minio(
                public.netloc,
                access_key=access_key,
                secret_key=secret_key,
                secure=public.scheme == "https",
                region=region,  # known: signing needs no request to the store
            )
        self._retry = retry or RetryPolicy()
        self._object_lock: dict[str, bool] = {}
        self._versioned: dict[str, bool] = {}

    @property
    def client(self) -> Minio:
        """The SDK client, for administrative calls (lifecycle, bucket policy)."""
        return self._client

    # buckets --------------------------------------------------------------------------------
    def ensure_bucket(self, bucket: str, *, versioned: bool, object_lock: bool) -> None:
        with _translated(f"create bucket {bucket}"):
            if not self._client.bucket_exists(bucket):
                try:
                    self._client.make_bucket(bucket, object_lock=object_lock)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            if versioned:
                self._client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
        self._object_lock.pop(bucket, None)
        self.has_object_lock(bucket)

    def has_object_lock(self, bucket: str) -> bool:
        if bucket not in self._object_lock:
            try:
                config: ObjectLockConfig = self._client.get_object_lock_config(bucket)
                self._object_lock[bucket] = config is not None
            except ValueError:
                # The SDK cannot parse a lock configuration without a default retention
                # rule - which still means object lock is enabled on the bucket.
                self._object_lock[bucket] = True
            except S3Error:
                self._object_lock[bucket] = False
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise translate(exc, "read object lock configuration") from exc
        return self._object_lock[bucket]

    def is_versioned(self, bucket: str) -> bool:
        """Whether the bucket keeps versions (asked once per bucket; versioning is never
        switched off again, only suspended, which still keeps the old versions)."""
        if bucket not in self._versioned:
            with _translated(f"read versioning of {bucket}"):
                status = self._client.get_bucket_versioning(bucket).status
            self._versioned[bucket] = status in ("Enabled", "Suspended")
        return self._versioned[bucket]

    # writing --------------------------------------------------------------------------------
    def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        retain_until: datetime | None = None,
    ) -> str | None:
        """Store the bytes; returns the version id where the bucket is versioned. The stream
        is cut into parts held one at a time, and each part is retried on its own."""
        retention = None
        if retain_until is not None and self.has_object_lock(bucket):
            retention = Retention(GOVERNANCE, retain_until)
        headers = genheaders(None, None, None, retention, False)
        headers["Content-Type"] = content_type
        parts = _parts(chunks, PART_SIZE)
        if parts.single():  # one part: a single PUT
            data = next(parts)
            return self._step(f"write {key}", lambda: self._put(bucket, key, data, headers))
        return self._multipart(bucket, key, headers, parts)

    def _put(self, bucket: str, key: str, data: bytes, headers: dict[str, Any]) -> str | None:
        result: ObjectWriteResult = self._client._put_object(bucket, key, data, dict(headers))
        version: str | None = result.version_id
        return version

    def _multipart(
        self,
        bucket: str,
        key: str,
        headers: dict[str, Any],
        parts: Iterator[bytes],
    ) -> str | None:
        client = self._client
        upload_id = self._step(
            f"start upload of {key}",
            lambda: client._create_multipart_upload(bucket, key, dict(headers)),
        )
        try:
            done: list[Part] = []
            data = next(parts, None)  # the only reference to the part in flight
            number = 0
            while data is not None:
                number += 1
                etag: str = self._step(
                    f"write part {number} of {key}",
                    partial(client._upload_part, bucket, key, data, None, upload_id, number),
                )
                done.append(Part(number, etag))
                data = None  # a sent part is freed before the next is read
                data = next(parts, None)
            result = self._step(
                f"complete upload of {key}",
                lambda: client._complete_multipart_upload(bucket, key, upload_id, done),
            )
        except BaseException:
            self._abort(bucket, key, upload_id)
            raise
        version: str | None = result.version_id
        return version

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            with _translated(f"abort upload of {key}"):
                self._client._abort_multipart_upload(bucket, key, upload_id)
        except Exception:  # noqa: BLE001, S110 - best effort; reconcile aborts stale uploads
            pass

    def _step(self, what: str, action: Callable[[], T]) -> T:
        def attempt() -> T:
            with _translated(what):
                return action()

        return self._retry.call(attempt, what)

    # reading --------------------------------------------------------------------------------
    def get_stream(
        self, bucket: str, key: str, *, version_id: str | None = None
    ) -> Iterator[bytes]:
        """The object's bytes in chunks; :class:`ObjectMissing` when absent."""
        with _translated(f"read {key}"):
            response = self._client.get_object(bucket, key, version_id=version_id)
        return _drain(response, key)

    def get_range(
        self, bucket: str, key: str, offset: int, length: int, *, version_id: str | None = None
    ) -> Iterator[bytes]:
        """``length`` bytes from ``offset`` (fewer at the end of the object)."""
        with _translated(f"read {key}"):
            response = self._client.get_object(
                bucket, key, offset=offset, length=length, version_id=version_id
            )
        return _drain(response, key)

    def list_versions(self, bucket: str, key: str) -> list[ObjectVersion]:
        with _translated(f"read versions of {key}"):
            objects: Iterable[Object] = self._client.list_objects(
                bucket, prefix=key, include_version=True
            )
            return [
                ObjectVersion(o.version_id, bool(o.is_delete_marker))
                for o in objects
                if o.object_name == key
            ]

    def all_versions(self, bucket: str, prefix: str = "") -> Iterator[VersionRef]:
        """Every version and delete marker under ``prefix`` (for reconciliation)."""
        with _translated(f"read versions under {prefix!r}"):
            for o in self._client.list_objects(
                bucket, prefix=prefix, recursive=True, include_version=True
            ):
                if o.object_name is not None:
                    yield VersionRef(
                        o.object_name,
                        o.version_id,
                        bool(o.is_delete_marker),
                        o.last_modified,
                    )

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        with _translated(f"list {bucket}"):
            for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True):
                if obj.object_name is not None:
                    yield obj.object_name

    # deleting -------------------------------------------------------------------------------
    def delete_versions(self, bucket: str, targets: list[VersionRef]) -> list[VersionRef]:
        """Delete these versions for good (governance retention bypassed), up to 1000 a
        request. Versions under a legal hold are left and returned; absent ones count as
        deleted."""
        locked: list[VersionRef] = []
        for start in range(0, len(targets), DELETE_BATCH):
            batch = targets[start : start + DELETE_BATCH]
            locked += self._step(
                f"delete {len(batch)} version(s)", partial(self._delete, bucket, batch)
            )
        return locked

    def _delete(self, bucket: str, batch: list[VersionRef]) -> list[VersionRef]:
        by_name = {(t.key, t.version_id): t for t in batch}
        objects = [DeleteObject(t.key, t.version_id) for t in batch]
        errors = list(self._client.remove_objects(bucket, objects, bypass_governance_mode=True))
        locked, failed = [], []
        for error in errors:
            if error.code in _MISSING:
                continue
            target = by_name.get((error.name or "", error.version_id))
            if error.code in _LOCKED and target is not None:
                locked.append(target)
            else:
                failed.append(error.code or "unknown")
        if failed:
            code = failed[0]
            if code in _TRANSIENT:
                raise TransientError(f"object store busy deleting versions: {code}")
            raise StoreRejected(f"object store refused to delete {len(failed)} version(s): {code}")
        return locked

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete the current object of an unversioned bucket; absent is not an error."""
        with contextlib.suppress(ObjectMissing):
            self._step(f"delete {key}", lambda: self._client.remove_object(bucket, key))

    def abort_stale_uploads(self, bucket: str, older_than: datetime) -> int:
        """Abort multipart uploads that a crashed worker left open."""
        with _translated(f"list uploads of {bucket}"):
            result = self._client._list_multipart_uploads(bucket)
            stale = [
                u for u in result.uploads if u.initiated_time and u.initiated_time < older_than
            ]
        for upload in stale:
            if upload.object_name and upload.upload_id:
                self._abort(bucket, upload.object_name, upload.upload_id)
        return len(stale)

    # legal holds ----------------------------------------------------------------------------
    def set_legal_hold(self, bucket: str, target: VersionRef, on: bool) -> None:
        client = self._client
        action = client.enable_object_legal_hold if on else client.disable_object_legal_hold
        self._step(
            f"set legal hold of {target.key}",
            lambda: action(bucket, target.key, version_id=target.version_id),
        )

    def legal_hold(self, bucket: str, target: VersionRef) -> bool:
        result = self._step(
            f"read legal hold of {target.key}",
            lambda: self._client.is_object_legal_hold_enabled(
                bucket, target.key, version_id=target.version_id
            ),
        )
        return bool(result)

    # sharing --------------------------------------------------------------------------------
    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str:
        with _translated(f"sign a link to {key}"):
            url: str = self._signer.presigned_get_object(bucket, key, expires=expires)
        return url


class _parts(Iterator[bytes]):  # noqa: N801 - used like the generator it replaces
    """The stream re-cut into parts of ``size`` bytes (the last may be shorter, or empty when
    the stream is). Each part is joined once from the chunks that make it; the stream is read
    one chunk ahead (not a whole part) to know whether a part is the last, so at most one
    part and one chunk are held at a time."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._source = iter(chunks)
        self._size = size
        self._ahead = b""
        self._held: bytes | None = None
        self.last = False

    def single(self) -> bool:
        """Whether the whole stream fits in one part (reads that part, kept for ``next``)."""
        self._held = self._cut()
        return self.last

    def __next__(self) -> bytes:
        if self._held is not None:
            part, self._held = self._held, None
            return part
        if self.last:
            raise StopIteration
        return self._cut()

    def _cut(self) -> bytes:
        pieces: list[bytes] = []
        length = 0
        while length < self._size:
            chunk, self._ahead = self._ahead or next(self._source, None), b""
            if chunk is None:
                break
            need = self._size - length
            if len(chunk) > need:  # split the chunk that crosses the boundary, not the part
                chunk, self._ahead = chunk[:need], chunk[need:]
            pieces.append(chunk)
            length += len(chunk)
        while not self._ahead and length == self._size:  # is there more? (empty chunks skipped)
            chunk = next(self._source, None)
            if chunk is None:
                break
            self._ahead = chunk
        self.last = not self._ahead
        return b"".join(pieces)


def _drain(response: urllib3.BaseHTTPResponse, key: str) -> Iterator[bytes]:
    try:
        try:
            yield from response.stream(READ_CHUNK)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(exc, f"read {key}") from exc
    finally:
        response.close()
        response.release_conn()
