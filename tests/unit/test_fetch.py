"""SSRF hardening of the audio fetcher: the address a recording's host resolves to is checked
when the connection is made, and the connection goes to that very address. Real sockets on
loopback aliases stand in for hosts; a fake resolver plays the DNS."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.fakes.memory import MemoryObjectStore
from tests.unit.conftest import ALLOWED_HOST, WAV, World, call_data, cloudevent, encode
from workers.adapters.fetch import AddressPolicy, AudioFetcher
from workers.domain.errors import UriNotAllowed
from workers.domain.uris import AudioLocation


class _Audio(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Length", str(len(WAV)))
        self.end_headers()
        self.wfile.write(WAV)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def pbx() -> Iterator[tuple[str, int]]:
    """A recording server on the loopback alias 127.0.0.2."""
    server = ThreadingHTTPServer(("127.0.0.2", 0), _Audio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.2", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Make the resolver answer ``answers``; returns the names it was asked for."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(host))
        if host in answers:
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port),
                )
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def fetcher(*networks: str) -> AudioFetcher:
    return AudioFetcher(
        MemoryObjectStore(), fetch_root=None, timeout_seconds=5, allowed_networks=networks
    )


def where(host: str, port: int) -> AudioLocation:
    return AudioLocation("http", host, f"http://{host}:{port}/call.wav", port)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_loopback_link_local_and_the_like_are_refused(address: str) -> None:
    assert not AddressPolicy().permits(ipaddress.ip_address(address))


def test_ordinary_and_private_addresses_are_permitted() -> None:
    ip = ipaddress.ip_address
    policy = AddressPolicy()
    assert policy.permits(ip("10.20.30.40"))  # a PBX on the shop's network
    assert policy.permits(ip("93.184.216.34"))
    assert AddressPolicy(["127.0.0.0/8"]).permits(ip("127.0.0.1"))


def test_an_allow_listed_name_resolving_to_metadata_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolving(monkeypatch, {ALLOWED_HOST: ["169.254.169.254"]})
    with pytest.raises(UriNotAllowed, match="CALLVAULT_FETCH_ALLOWED_NETWORKS"):
        b"".join(fetcher().open(where(ALLOWED_HOST, 80)))


def test_loopback_is_refused_unless_allowed(
    pbx: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = pbx
    with pytest.raises(UriNotAllowed):
        b"".join(fetcher().open(where(host, port)))
    assert b"".join(fetcher("127.0.0.2/32").open(where(host, port))) == WAV


def test_the_connection_goes_to_the_address_that_was_checked(
    pbx: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolves to a refused and a permitted address: only the permitted one is
    dialled, and the request still names the host (TLS would verify that name)."""
    _, port = pbx
    asked = resolving(monkeypatch, {ALLOWED_HOST: ["127.0.0.1", "127.0.0.2"]})
    _Audio.hosts.clear()
    got = b"".join(fetcher("127.0.0.2/32").open(where(ALLOWED_HOST, port)))
    assert got == WAV
    assert asked.count(ALLOWED_HOST) == 1  # resolved once: no second answer to rebind to
    assert _Audio.hosts == [f"{ALLOWED_HOST}:{port}"]


def test_a_rebinding_host_is_dead_lettered_as_not_allowed(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through the worker: an allow-listed name that now points at the metadata
    service becomes a dead letter ``uri_not_allowed``; nothing is stored."""
    world = make_world()
    resolving(monkeypatch, {ALLOWED_HOST: ["169.254.169.254"]})
    uri = f"https://{ALLOWED_HOST}/rec/c-1.wav"
    event = cloudevent("callvault.call.ended.v1", call_data("c-ssrf", uri, WAV))
    assert world.deliver("calls.ended", encode(event), "c-ssrf") == "deadletter"
    (letter,) = world.data("callvault.deadletter")
    assert letter["error_code"] == "uri_not_allowed"
    assert world.recordings() == []
