"""The S3 object store through the MinIO SDK (versitygw locally, any S3 server in production).

Every library error is translated here and nowhere else: an absent object is
:class:`ObjectMissing` (a fact, not a failure); a store that is away, busy or answering 5xx/429
(XML or not) is :class:`TransientError`; a refusal that a retry cannot cure (AccessDenied,
NoSuchBucket, InvalidArgument, a key too long, another 4xx) is :class:`StoreRejected`.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio import datatypes as minio_datatypes
from minio import time as minio_time
from minio.commonconfig import ENABLED, GOVERNANCE
from minio.datatypes import Object
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.objectlockconfig import ObjectLockConfig
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from ..app.ports.objects import ObjectMissing, ObjectVersion, VersionRef
from ..app.retry import RetryPolicy
from ..domain.errors import StoreRejected, TransientError

T = TypeVar("T")
# S3's smallest part: the SDK holds about four parts while it cuts the next one from the stream
# (the part in flight, the bytes read, their copy with the byte read ahead, its slice), so the
# part size sets the memory an upload of any length costs. 10,000 parts make 48 GiB at most.
PART_SIZE = 5 * 1024 * 1024
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
    """Install the tolerant parser where the SDK's XML readers look it up (idempotent). The
    SDK offers no public hook for this: its listing types call the module's parser by name,
    with a fixed format; versitygw's nanoseconds would otherwise make every listing of object
    versions (purges, reconcile) fail."""
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
        """Store the bytes; returns the version id where the bucket is versioned. A stream of
        one part is sent in one PUT, retried as a whole; a longer one goes up as a multipart
        upload of ``PART_SIZE`` parts, read from the stream one at a time (the SDK holds the
        part in flight and the next one as it is read: a recording of any length costs a few
        parts of memory). The stream cannot be read twice, so a multipart upload is tried
        once; the SDK aborts it when a part fails, and the caller's retry starts again from
        the source (an upload a killed process left open is aborted by reconcile)."""
        retention = None
        if retain_until is not None and self.has_object_lock(bucket):
            retention = Retention(GOVERNANCE, retain_until)
        reader = _Reader(chunks)
        first = reader.read(PART_SIZE + 1)
        put = partial(
            self._client.put_object,
            bucket,
            key,
            content_type=content_type,
            retention=retention,
            part_size=PART_SIZE,
            num_parallel_uploads=1,  # one part in flight: the memory bound
        )
        if len(first) <= PART_SIZE:
            result = self._step(
                f"write {key}", lambda: put(data=io.BytesIO(first), length=len(first))
            )
        else:
            reader.push_back(first)
            with _translated(f"write {key}"):
                result = put(data=cast(BinaryIO, reader), length=-1)  # it calls read() only
        version: str | None = result.version_id
        return version

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            with _translated(f"abort upload of {key}"):
                # minio-py 7 has no public call for this (nor for listing uploads, below)
                self._client._abort_multipart_upload(bucket, key, upload_id)
        except Exception:  # noqa: BLE001, S110 - best effort; the next reconcile tries again
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
        """Abort multipart uploads that a crashed worker left open (through the SDK's private
        calls: its public ones neither list nor abort uploads)."""
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


class _Reader(io.RawIOBase):
    """A stream of chunks as the file the SDK's ``put_object`` reads its parts from: each
    ``read(size)`` returns ``size`` bytes (fewer at the end), joined once from the chunks that
    make them - or the chunk itself when one chunk is exactly that - so that at most one part
    and the rest of one chunk are held."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._source = iter(chunks)
        self._pending: list[bytes] = []  # read before the source, first one first

    def readable(self) -> bool:
        return True

    def push_back(self, data: bytes) -> None:
        """Make ``data`` the next bytes read again."""
        if data:
            self._pending.insert(0, data)

    def read(self, size: int | None = -1) -> bytes:
        wanted = -1 if size is None else size
        pieces: list[bytes] = []
        length = 0
        while wanted < 0 or length < wanted:
            chunk = self._pending.pop(0) if self._pending else next(self._source, None)
            if chunk is None:
                break
            need = wanted - length
            if 0 <= need < len(chunk):  # split the chunk that crosses the boundary
                chunk, rest = chunk[:need], chunk[need:]
                self._pending.insert(0, rest)
            pieces.append(chunk)
            length += len(chunk)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _drain(response: urllib3.BaseHTTPResponse, key: str) -> Iterator[bytes]:
    try:
        try:
            yield from response.stream(READ_CHUNK)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(exc, f"read {key}") from exc
    finally:
        response.close()
        response.release_conn()
