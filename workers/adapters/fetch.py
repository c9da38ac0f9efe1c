"""Fetching a recording's audio, streaming, from the landing bucket, an allow-listed web host,
or a directory under ``CALLVAULT_FETCH_ROOT``.

A web host must be on ``CALLVAULT_FETCH_ALLOWED_HOSTS`` by name (checked before any byte is
read), and the address its name resolves to is checked again when the connection is made:
loopback, link-local (cloud metadata services), unspecified and multicast addresses are
refused unless ``CALLVAULT_FETCH_ALLOWED_NETWORKS`` names them. The connection goes to the
very address that was checked, so a name that resolves differently a moment later (DNS
rebinding) cannot lead the worker to a service on its own host or network link."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..app.ports.objects import ObjectMissing, ObjectStore
from ..domain.errors import FetchFailed, TransientError, UriNotAllowed
from ..domain.uris import AudioLocation
from .confined import Beneath, NotRegularFile, OutsideDirectory

CHUNK = 256 * 1024
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """Every address the recording's host resolves to is one the fetcher may not reach."""


class AddressPolicy:
    """Which resolved addresses a fetch may connect to."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self._allowed: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        )

    def permits(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._allowed):
            return True
        return not (
            address.is_loopback
            or address.is_link_local
            or address.is_unspecified
            or address.is_multicast
        )

    def addresses(self, host: str, port: int) -> list[str]:
        """The permitted addresses ``host`` resolves to, in resolver order."""
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        permitted = [a for a in addresses if self.permits(ipaddress.ip_address(a.split("%")[0]))]
        if not permitted:
            raise AddressRefused(host)
        return permitted


class _Guarded:
    """Connects to a checked address of the host; TLS still verifies the host's name."""

    policy: AddressPolicy
    host: str
    port: int
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.policy.addresses(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        name, error = self._dns_host, None
        try:
            for address in addresses:
                self._dns_host = address
                try:
                    sock: socket.socket = super()._new_conn()  # type: ignore[misc]
                except urllib3.exceptions.NewConnectionError as exc:
                    error = exc
                    continue
                return sock
        finally:
            self._dns_host = name
        assert error is not None
        raise error


def _guarded_pools(policy: AddressPolicy) -> dict[str, Any]:
    http = type("GuardedHTTPConnection", (_Guarded, HTTPConnection), {"policy": policy})
    https = type("GuardedHTTPSConnection", (_Guarded, HTTPSConnection), {"policy": policy})
    return {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }


class AudioFetcher:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        fetch_root: Path | None,
        timeout_seconds: float,
        allowed_networks: Iterable[str] = (),
    ) -> None:
        self._objects = objects
        self._root = Beneath(fetch_root) if fetch_root else None
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_seconds, 10), read=timeout_seconds),
            retries=urllib3.Retry(total=2, redirect=0, backoff_factor=0.2),
        )
        self._http.pool_classes_by_scheme = _guarded_pools(AddressPolicy(allowed_networks))

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
        try:  # opened here, not when the stream is first read: refusals are this call's
            handle = self._root.open(Path(where.path))
        except OutsideDirectory:
            raise UriNotAllowed(
                "file:// path lies outside CALLVAULT_FETCH_ROOT (or reaches it by a symlink)"
            ) from None
        except (NotRegularFile, FileNotFoundError, IsADirectoryError):
            raise FetchFailed("file:// path is not an existing regular file") from None
        return _read_file(handle)

    def _from_http(self, where: AudioLocation) -> Iterator[bytes]:
        try:
            response = self._http.request("GET", where.path, preload_content=False)
        except AddressRefused:
            raise UriNotAllowed(
                "the recording's host resolves to a loopback, link-local or other internal "
                "address (allow it with CALLVAULT_FETCH_ALLOWED_NETWORKS)"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise FetchFailed(
                f"could not reach the recording's host: {type(exc).__name__}"
            ) from exc
        if response.status != 200:
            response.release_conn()
            raise FetchFailed(f"the recording's host answered HTTP {response.status}")
        return _drain(response)


def _read_file(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _drain(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(CHUNK)
    except urllib3.exceptions.HTTPError as exc:
        raise FetchFailed(f"download broke off: {type(exc).__name__}") from exc
    finally:
        response.release_conn()
