"""The object store port: where audio, exports and audit checkpoints are kept. Its real
adapter is :mod:`workers.adapters.s3`; the fake lives under ``tests/fakes``; one contract test
suite runs against both."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class ObjectMissing(Exception):
    """The object (or one of its versions) does not exist: a fact, not a failure."""


@dataclass(frozen=True)
class ObjectVersion:
    version_id: str | None
    is_delete_marker: bool = False


@dataclass(frozen=True)
class VersionRef:
    """One version (or delete marker) of one object."""

    key: str
    version_id: str | None
    is_delete_marker: bool = False
    last_modified: datetime | None = None


class ObjectStore(Protocol):
    """The data path: objects written, read, listed by version, deleted, shared by link."""

    def is_versioned(self, bucket: str) -> bool:
        """Whether the bucket keeps versions (deleting an object for good then means deleting
        each version)."""
        ...

    def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        retain_until: datetime | None = None,
    ) -> str | None:
        """Store the bytes; returns the version id where the bucket is versioned."""
        ...

    def get_stream(
        self, bucket: str, key: str, *, version_id: str | None = None
    ) -> Iterator[bytes]:
        """The object's bytes in chunks; :class:`ObjectMissing` when absent."""
        ...

    def get_range(
        self, bucket: str, key: str, offset: int, length: int, *, version_id: str | None = None
    ) -> Iterator[bytes]:
        """``length`` bytes of the object from ``offset`` (fewer at its end);
        :class:`ObjectMissing` when absent."""
        ...

    def list_versions(self, bucket: str, key: str) -> list[ObjectVersion]: ...

    def all_versions(self, bucket: str, prefix: str = "") -> Iterator[VersionRef]: ...

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]: ...

    def delete_versions(self, bucket: str, targets: list[VersionRef]) -> list[VersionRef]:
        """Delete these versions for good (governance retention bypassed). Versions under a
        legal hold are not deleted: they are returned. Absent ones count as deleted."""
        ...

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete the current object of an unversioned bucket; absent is not an error."""
        ...

    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str: ...


class LegalHolds(Protocol):
    """The object lock's legal hold on single versions: a held version cannot be deleted."""

    def set_legal_hold(self, bucket: str, target: VersionRef, on: bool) -> None:
        """:class:`ObjectMissing` when the version does not exist."""
        ...

    def legal_hold(self, bucket: str, target: VersionRef) -> bool: ...


class Buckets(Protocol):
    """Setting buckets up and keeping them tidy: what ``migrate`` and reconcile do."""

    def ensure_bucket(self, bucket: str, *, versioned: bool, object_lock: bool) -> None: ...

    def has_object_lock(self, bucket: str) -> bool: ...

    def abort_stale_uploads(self, bucket: str, older_than: datetime) -> int:
        """Abort the multipart uploads begun before ``older_than`` (a crashed writer's);
        returns how many."""
        ...


class ObjectStorage(ObjectStore, LegalHolds, Buckets, Protocol):
    """One object store: its data path, its legal holds, its buckets."""
