"""The S3 object store through the MinIO SDK (MinIO in production, versitygw locally)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import BinaryIO, cast
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio import datatypes as minio_datatypes
from minio import time as minio_time
from minio.commonconfig import ENABLED, GOVERNANCE
from minio.datatypes import Object
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.objectlockconfig import ObjectLockConfig
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from ..domain.errors import TransientError
from ..ports import ObjectMissing, ObjectVersion
from .streams import IterReader

PART_SIZE = 8 * 1024 * 1024
_FRACTION = re.compile(r"\.(\d{6})\d+Z$")
READ_CHUNK = 256 * 1024
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"}


def _tolerant_iso8601utc(value: str | None) -> datetime | None:
    """minio-py parses at most microseconds; some S3 servers (versitygw) send nanoseconds in
    delete markers' LastModified, which would make listing object versions fail."""
    return minio_time.from_iso8601utc(_FRACTION.sub(r".\1Z", value) if value else value)


def _accept_nanosecond_timestamps() -> None:
    """Install the tolerant parser where the SDK's XML readers look it up (idempotent)."""
    minio_datatypes.from_iso8601utc = _tolerant_iso8601utc  # type: ignore[attr-defined]


class S3Store:
    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, region: str, *, timeout: float = 60
    ) -> None:
        _accept_nanosecond_timestamps()
        url = urlsplit(endpoint)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=timeout),
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
            maxsize=16,
        )
        self._client = Minio(
            url.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=url.scheme == "https",
            region=region,
            http_client=http,
        )
        self.object_lock: dict[str, bool] = {}
        self._versioned: dict[str, bool] = {}

    @property
    def client(self) -> Minio:
        """The SDK client, for administrative calls (lifecycle, bucket policy)."""
        return self._client

    def ensure_bucket(self, bucket: str, *, versioned: bool, object_lock: bool) -> None:
        if not self._client.bucket_exists(bucket):
            try:
                self._client.make_bucket(bucket, object_lock=object_lock)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        if versioned:
            self._client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
        self.object_lock[bucket] = self.has_object_lock(bucket)

    def has_object_lock(self, bucket: str) -> bool:
        if bucket not in self.object_lock:
            try:
                config: ObjectLockConfig = self._client.get_object_lock_config(bucket)
                self.object_lock[bucket] = config is not None
            except ValueError:
                # The SDK cannot parse a lock configuration without a default retention
                # rule - which still means object lock is enabled on the bucket.
                self.object_lock[bucket] = True
            except S3Error:
                self.object_lock[bucket] = False
        return self.object_lock[bucket]

    def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        retain_until: datetime | None = None,
    ) -> str | None:
        retention = None
        if retain_until is not None and self.has_object_lock(bucket):
            retention = Retention(GOVERNANCE, retain_until)
        try:
            result = self._client.put_object(
                bucket,
                key,
                cast(BinaryIO, IterReader(chunks)),
                length=-1,
                part_size=PART_SIZE,
                content_type=content_type,
                retention=retention,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"object store unreachable: {type(exc).__name__}") from exc
        version: str | None = result.version_id
        return version

    def get_stream(self, bucket: str, key: str) -> Iterator[bytes]:
        try:
            response = self._client.get_object(bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectMissing(f"{bucket}/{key}") from exc
            raise
        return _drain(response)

    def get_range(self, bucket: str, key: str, offset: int, length: int) -> Iterator[bytes]:
        """``length`` bytes from ``offset`` (a ranged GET); :class:`ObjectMissing` when absent."""
        # console: the player seeks in long calls without fetching the whole object
        try:
            response = self._client.get_object(bucket, key, offset=offset, length=length)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectMissing(f"{bucket}/{key}") from exc
            raise
        return _drain(response)

    def list_versions(self, bucket: str, key: str) -> list[ObjectVersion]:
        objects: Iterable[Object] = self._client.list_objects(
            bucket, prefix=key, include_version=True
        )
        return [
            ObjectVersion(o.version_id, bool(o.is_delete_marker))
            for o in objects
            if o.object_name == key
        ]

    def is_versioned(self, bucket: str) -> bool:
        """Whether the bucket keeps versions (asked once per bucket; versioning is never
        switched off again, only suspended, which still keeps the old versions)."""
        if bucket not in self._versioned:
            status = self._client.get_bucket_versioning(bucket).status
            self._versioned[bucket] = status in ("Enabled", "Suspended")
        return self._versioned[bucket]

    def delete_versions(self, bucket: str, key: str, versions: list[ObjectVersion]) -> int:
        if not versions:
            return 0
        targets = [DeleteObject(key, v.version_id) for v in versions]
        errors = list(self._client.remove_objects(bucket, targets, bypass_governance_mode=True))
        failed = [e for e in errors if e.code not in _MISSING]
        if failed:
            raise TransientError(
                f"could not delete {len(failed)} object version(s): {failed[0].code}"
            )
        return len(versions)

    def delete_object(self, bucket: str, key: str) -> None:
        try:
            self._client.remove_object(bucket, key)
        except S3Error as exc:
            if exc.code not in _MISSING:
                raise

    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str:
        url: str = self._client.presigned_get_object(bucket, key, expires=expires)
        return url

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True):
            if obj.object_name is not None:
                yield obj.object_name


def _drain(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(READ_CHUNK)
    finally:
        response.close()
        response.release_conn()
