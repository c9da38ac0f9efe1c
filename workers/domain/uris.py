"""Where a recording may be fetched from: checked before any byte is read."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import UnsupportedUri, UriNotAllowed


@dataclass(frozen=True)
class AudioLocation:
    scheme: str  # s3, http, https, file
    host: str = ""  # bucket for s3, host for http(s)
    path: str = ""  # object key for s3, URL for http(s), absolute path for file
    port: int | None = None


def locate(uri: str, *, landing_bucket: str, allowed_hosts: tuple[str, ...]) -> AudioLocation:
    """Parse and allow-list a recording URI; file paths are confined later, on the file system."""
    if any(ch in uri for ch in "\r\n\t\x00") or uri != uri.strip():
        raise UnsupportedUri("recording.uri contains whitespace or control characters")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        key = unquote(parts.path.lstrip("/"))
        if parts.netloc != landing_bucket:
            raise UriNotAllowed("s3:// recordings must lie in the configured landing bucket")
        return AudioLocation("s3", parts.netloc, _landing_key(key, parts.query or parts.fragment))
    if scheme in ("http", "https"):
        host = (parts.hostname or "").lower().rstrip(".")
        allowed = {h.lower().rstrip(".") for h in allowed_hosts}
        if not host or host not in allowed:
            raise UriNotAllowed("the recording's host is not on CALLVAULT_FETCH_ALLOWED_HOSTS")
        if parts.username or parts.password:
            raise UriNotAllowed("credentials in recording URLs are not accepted")
        return AudioLocation(scheme, host, uri, parts.port)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UriNotAllowed("file:// URIs must not name a remote host")
        path = unquote(parts.path)
        if not path.startswith("/") or "\x00" in path:
            raise UriNotAllowed("file:// path must be absolute")
        return AudioLocation("file", "", path)
    raise UnsupportedUri("recording.uri must be s3://, https://, http:// or file:///")


def _landing_key(key: str, query: str) -> str:
    if query:
        raise UriNotAllowed("s3:// URIs take no query or fragment (a version, say)")
    if not key:
        raise UriNotAllowed("s3:// key is empty")
    if {".", ".."} & set(key.split("/")):
        raise UriNotAllowed("s3:// key has a '.' or '..' segment")
    return key
