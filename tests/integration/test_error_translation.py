"""Each adapter turns its library's failures into callvault's own classes, which decide what
happens next: ``TransientError`` is retried and then redelivered, a ``PermanentError``
(``StoreRejected``, ``SchemaMissing``) is dead-lettered or refused at once, ``ObjectMissing``
means the object is gone. Checked on the real services, on a small HTTP server playing a
misbehaving S3 (a proxy's HTML error page, throttling), and on the fakes where they model the
same failure, so that unit tests on fakes mean the same thing."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from testbed.stack import Instance, database, free_port
from tests.fakes.memory import MemoryObjectStore
from workers.adapters.s3 import S3Store
from workers.app.ports.objects import ObjectMissing
from workers.app.retry import RetryPolicy
from workers.bootstrap import object_store
from workers.domain.errors import PermanentError, SchemaMissing, StoreRejected, TransientError
from workers.settings import load_settings

ONCE = RetryPolicy(budget_seconds=0, max_attempts=1)  # the adapter's verdict, not the retry's


def closed_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the object store ----------------------------------------------------------------------


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryObjectStore()
        return
    instance: Instance = request.getfixturevalue("instance")
    yield object_store(load_settings(**instance.settings_kwargs()), ONCE)


def test_a_missing_object_is_object_missing(store: Any) -> None:
    bucket = f"errors-{uuid.uuid4().hex[:10]}"
    store.ensure_bucket(bucket, versioned=True, object_lock=False)
    with pytest.raises(ObjectMissing):
        b"".join(store.get_stream(bucket, "no/such/key"))
    with pytest.raises(ObjectMissing):
        b"".join(store.get_stream(f"{bucket}-gone", "key"))  # reading a bucket that is not there


def test_writing_to_a_missing_bucket_is_refused_for_good(store: Any) -> None:
    with pytest.raises(StoreRejected):
        store.put_stream(f"errors-{uuid.uuid4().hex[:10]}", "k", [b"x"], content_type="x")


def test_wrong_credentials_are_refused_for_good(instance: Instance) -> None:
    settings = load_settings(**instance.settings_kwargs())
    assert settings.s3_endpoint is not None
    wrong = S3Store(settings.s3_endpoint, "callvault", "not-the-secret", "eu-central-1", retry=ONCE)
    with pytest.raises(StoreRejected):
        wrong.ensure_bucket(f"errors-{uuid.uuid4().hex[:10]}", versioned=False, object_lock=False)


def test_an_unreachable_store_is_transient() -> None:
    gone = S3Store(f"http://127.0.0.1:{closed_port()}", "a", "b", "eu-central-1", retry=ONCE)
    with pytest.raises(TransientError):
        gone.put_stream("bucket", "key", [b"x"], content_type="x")


class _Answer(BaseHTTPRequestHandler):
    """Answers every request with the status and body the test chose."""

    status = 503
    body = b""
    content_type = "text/html"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer  # noqa: N815 - http.server's names

    def log_message(self, *args: Any) -> None:
        pass


def _xml(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{code}</Message><Resource>/b/k</Resource><RequestId>1</RequestId></Error>"
    ).encode()


HTML = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (503, HTML, "text/html", TransientError),  # a proxy in front of the store
        (502, b"", "text/plain", TransientError),
        (429, HTML, "text/html", TransientError),  # throttled
        (500, _xml("InternalError"), "application/xml", TransientError),
        (503, _xml("SlowDown"), "application/xml", TransientError),
        (403, HTML, "text/html", StoreRejected),  # a proxy refusing: no retry cures it
        (400, _xml("InvalidArgument"), "application/xml", StoreRejected),
        (403, _xml("AccessDenied"), "application/xml", StoreRejected),
    ],
)
def test_odd_answers_of_a_store_are_classified(
    status: int, body: bytes, content_type: str, expected: type[Exception]
) -> None:
    handler = type("Handler", (_Answer,), {"status": status, "body": body})
    handler.content_type = content_type
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        odd = S3Store(endpoint, "a", "b", "eu-central-1", retry=ONCE)
        with pytest.raises(expected) as raised:
            odd.put_stream("bucket", "key", [b"x"], content_type="x")
        if expected is StoreRejected:
            assert isinstance(raised.value, PermanentError)
    finally:
        server.shutdown()
        server.server_close()


# --- PostgreSQL ------------------------------------------------------------------------------


def test_an_unreachable_database_is_transient() -> None:
    db = database(f"postgresql://callvault:x@127.0.0.1:{closed_port()}/callvault")
    started = time.monotonic()
    with pytest.raises(TransientError):
        db.open(wait_seconds=2)
    assert time.monotonic() - started < 10
    db.close()


def test_a_database_without_the_schema_says_run_migrate(instance: Instance) -> None:
    db = database(instance.database_url)  # created empty by the fixture, never migrated
    db.open()
    try:
        with pytest.raises(SchemaMissing, match="callvault migrate"), db.unit_of_work() as uow:
            uow.recordings.get(str(uuid.uuid4()))
    finally:
        db.close()


def test_a_statement_the_database_refuses_is_permanent(instance: Instance) -> None:
    from workers.adapters.postgres.migrate import migrate_schema

    migrate_schema(instance.migration_settings())
    db = database(instance.database_url)  # the workers' role: it may only append to the trail
    db.open()
    try:
        with pytest.raises(PermanentError), db.connection() as conn:
            conn.execute("UPDATE audit_log SET action = 'rewritten'")
    finally:
        db.close()
    with psycopg.connect(instance.owner_url) as owner:
        rewritten = owner.execute("SELECT count(*) FROM audit_log WHERE action = 'rewritten'")
        assert rewritten.fetchone() == (0,)
