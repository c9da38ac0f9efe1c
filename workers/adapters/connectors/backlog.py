"""A connector's local state: the calls waiting to be sent, and the call ids already sent.

One SQLite file per connector state directory. Several processes may share it (Asterisk starts
one post-command per recording while a watcher drains): SQLite serialises their writes, and
one file lock lets only one of them drain at a time. Rows of waiting calls hold the event
(with the caller's number) until Kafka acknowledges it; deleted rows are overwritten
(``secure_delete``), and the sent ledger keeps nothing but call ids.

A call whose recording was fetched from a cloud provider carries a :class:`ProviderCopy`. When
Kafka acknowledges the call, the same transaction that records it as sent also keeps a keyed
digest of the provider's recording id for ever (a webhook pair replayed years later is still
recognised) and queues the deletion of the provider's copy; the digest's key never leaves the
state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SENT_KEPT_SECONDS = 90 * 86400  # a PBX re-offering a call after that is not expected

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    call_id     TEXT PRIMARY KEY,
    queued_at   REAL NOT NULL,
    event       TEXT NOT NULL,
    audio       TEXT NOT NULL,
    owned       INTEGER NOT NULL,
    landing_key TEXT NOT NULL,
    uploaded    INTEGER NOT NULL DEFAULT 0,
    companions  TEXT NOT NULL DEFAULT '[]',
    directory   TEXT,               -- the audio lies beneath it (NULL: its parent)
    companions_directory TEXT,      -- the companions lie beneath it (NULL: directory)
    provider_copy TEXT              -- JSON ProviderCopy, or NULL
);
CREATE TABLE IF NOT EXISTS sent (
    call_id TEXT PRIMARY KEY,
    sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS provider_recordings (  -- kept for ever: never ingested twice
    digest  TEXT PRIMARY KEY,
    sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS provider_deletions (   -- copies at the provider still to delete
    digest    TEXT PRIMARY KEY,
    provider  TEXT NOT NULL,
    reference TEXT NOT NULL,
    queued_at REAL NOT NULL,
    attempts  INTEGER NOT NULL DEFAULT 0,
    next_at   REAL NOT NULL
);
"""
_ADDED_COLUMNS = ("directory", "companions_directory", "provider_copy")  # a backlog from before
LEDGER_KEY = "provider-ledger.key"


@dataclass(frozen=True)
class ProviderCopy:
    """The copy a cloud provider keeps of a recording: which provider, what its API calls it
    (Twilio's RecordingSid, Telnyx's call leg, Vonage's file id) and whether to delete it."""

    provider: str
    reference: str
    delete: bool = True


@dataclass(frozen=True)
class Deletion:
    digest: str
    provider: str
    reference: str
    queued_at: float
    attempts: int


@dataclass(frozen=True)
class Pending:
    call_id: str
    queued_at: float
    event: dict[str, Any]
    audio: Path
    owned: bool  # the connector deletes the local audio once Kafka acknowledged
    landing_key: str
    uploaded: bool
    companions: tuple[Path, ...] = ()  # the system's own files behind the audio, deleted with it
    directory: Path | None = None  # nothing outside it is read or deleted (None: audio's parent)
    companions_directory: Path | None = None  # the same for the companions (None: directory)
    provider_copy: ProviderCopy | None = None

    @property
    def audio_root(self) -> Path:
        return self.directory or self.audio.parent

    @property
    def companions_root(self) -> Path:
        return self.companions_directory or self.audio_root


class Backlog:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._lock = threading.RLock()  # one connection, shared by a web server's threads
        self._db = sqlite3.connect(
            directory / "state.sqlite3", timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
        for column in _ADDED_COLUMNS:
            if column not in columns:
                _add_column(self._db, column)
        self._ledger_key = _ledger_key(directory)

    def close(self) -> None:
        self._db.close()

    def was_sent(self, call_id: str) -> bool:
        return self._one("SELECT 1 FROM sent WHERE call_id = ?", call_id) is not None

    def is_pending(self, call_id: str) -> bool:
        return self._one("SELECT 1 FROM pending WHERE call_id = ?", call_id) is not None

    def size(self) -> int:
        row = self._one("SELECT count(*) FROM pending")
        return int(row[0]) if row else 0

    def oldest_age(self, now: float) -> float:
        row = self._one("SELECT min(queued_at) FROM pending")
        return max(0.0, now - row[0]) if row and row[0] is not None else 0.0

    def add(self, item: Pending) -> bool:
        """Queue a call; ``False`` when it is queued or sent already."""
        with self._write():
            if self.was_sent(item.call_id):
                return False
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO pending "
                "(call_id, queued_at, event, audio, owned, landing_key, uploaded, companions, "
                "directory, companions_directory, provider_copy) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                (
                    item.call_id,
                    item.queued_at,
                    json.dumps(item.event),
                    str(item.audio),
                    int(item.owned),
                    item.landing_key,
                    json.dumps([str(p) for p in item.companions]),
                    str(item.audio_root),
                    str(item.companions_root),
                    json.dumps(item.provider_copy.__dict__) if item.provider_copy else None,
                ),
            )
            return cursor.rowcount == 1

    def waiting(self) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id, queued_at, event, audio, owned, landing_key, uploaded, "
                "companions, directory, companions_directory, provider_copy FROM pending "
                "ORDER BY queued_at, call_id"
            ).fetchall()
        return [
            Pending(
                r[0],
                r[1],
                json.loads(r[2]),
                Path(r[3]),
                bool(r[4]),
                r[5],
                bool(r[6]),
                tuple(Path(p) for p in json.loads(r[7])),
                Path(r[8]) if r[8] else None,
                Path(r[9]) if r[9] else None,
                ProviderCopy(**json.loads(r[10])) if r[10] else None,
            )
            for r in rows
        ]

    def mark_uploaded(self, call_id: str, event: dict[str, Any]) -> None:
        """The audio is in the landing bucket; the event now names it (and its checksum)."""
        with self._write():
            self._db.execute(
                "UPDATE pending SET uploaded = 1, event = ? WHERE call_id = ?",
                (json.dumps(event), call_id),
            )

    def mark_sent(self, call_id: str, now: float) -> None:
        """Kafka has the call: it is sent, and its provider copy (if any) is remembered for
        ever and queued for deletion - in one transaction."""
        with self._write():
            row = self._one("SELECT provider_copy FROM pending WHERE call_id = ?", call_id)
            if row is not None and row[0]:
                self._remember(ProviderCopy(**json.loads(row[0])), now)
            self._db.execute("DELETE FROM pending WHERE call_id = ?", (call_id,))
            self._db.execute(
                "INSERT OR REPLACE INTO sent (call_id, sent_at) VALUES (?, ?)", (call_id, now)
            )
            self._db.execute("DELETE FROM sent WHERE sent_at < ?", (now - SENT_KEPT_SECONDS,))

    # -- copies at the provider -----------------------------------------------------------------
    def provider_digest(self, copy: ProviderCopy) -> str:
        """A keyed digest of the provider's recording: the only form in which it is kept."""
        text = f"{copy.provider}:{copy.reference}".encode()
        return hmac.new(self._ledger_key, text, hashlib.sha256).hexdigest()

    def seen_provider_copy(self, copy: ProviderCopy) -> bool:
        """Whether a call with this provider recording was ever sent (however long ago)."""
        digest = self.provider_digest(copy)
        return self._one("SELECT 1 FROM provider_recordings WHERE digest = ?", digest) is not None

    def _remember(self, copy: ProviderCopy, now: float) -> None:
        digest = self.provider_digest(copy)
        self._db.execute(
            "INSERT OR IGNORE INTO provider_recordings (digest, sent_at) VALUES (?, ?)",
            (digest, now),
        )
        if copy.delete:
            self._db.execute(
                "INSERT OR IGNORE INTO provider_deletions "
                "(digest, provider, reference, queued_at, next_at) VALUES (?, ?, ?, ?, ?)",
                (digest, copy.provider, copy.reference, now, now),
            )

    def due_deletions(self, now: float, limit: int = 100) -> list[Deletion]:
        with self._lock:
            rows = self._db.execute(
                "SELECT digest, provider, reference, queued_at, attempts FROM provider_deletions "
                "WHERE next_at <= ? ORDER BY next_at LIMIT ?",
                (now, limit),
            ).fetchall()
        return [Deletion(*row) for row in rows]

    def deletion_done(self, digest: str) -> None:
        """The provider's copy is gone: only the digest in the ledger remains."""
        with self._write():
            self._db.execute("DELETE FROM provider_deletions WHERE digest = ?", (digest,))

    def deletion_failed(self, digest: str, retry_at: float) -> None:
        with self._write():
            self._db.execute(
                "UPDATE provider_deletions SET attempts = attempts + 1, next_at = ? "
                "WHERE digest = ?",
                (retry_at, digest),
            )

    def deletions_waiting(self, now: float) -> tuple[int, float]:
        """How many provider copies are still to delete, and the age of the oldest."""
        row = self._one("SELECT count(*), min(queued_at) FROM provider_deletions")
        count, oldest = (row[0], row[1]) if row else (0, None)
        return int(count), max(0.0, now - oldest) if oldest is not None else 0.0

    def drop(self, call_id: str) -> None:
        with self._write():
            self._db.execute("DELETE FROM pending WHERE call_id = ?", (call_id,))

    @contextlib.contextmanager
    def draining(self) -> Iterator[bool]:
        """Whether this process may drain now (another one holds the lock: ``False``)."""
        with (self.directory / "drain.lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()


def _add_column(db: sqlite3.Connection, column: str) -> None:
    try:
        db.execute(f"ALTER TABLE pending ADD COLUMN {column} TEXT")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # another process added it a moment ago
            raise


def _ledger_key(directory: Path) -> bytes:
    """The key of the provider ledger's digests: made once, 0600, in the state directory (two
    processes starting together agree on the first one written)."""
    path = directory / LEDGER_KEY
    if not path.exists():
        fresh = directory / f".{LEDGER_KEY}.{secrets.token_hex(8)}"
        descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):
            os.link(fresh, path)  # atomic: only the first key is ever used
        fresh.unlink()
    return path.read_bytes()
