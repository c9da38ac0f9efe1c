"""The console behind a TLS-terminating reverse proxy: the browser's origin is the public URL,
cookies are Secure, and only a trusted proxy may name the client's address."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.unit.conftest import CUSTOMER_PHONE, World, make_settings
from tests.unit.console_world import PASSWORD, ConsoleWorld, build_console
from workers.domain.errors import ConfigError

PUBLIC = "https://calls.example.lt"
PROXY = ("10.1.2.3", 41000)  # the reverse proxy, as the console's socket sees it
UPSTREAM = "http://127.0.0.1:8080"  # the Host the proxy sends (nginx's default rewrites it)


@pytest.fixture
def cw(world: World) -> ConsoleWorld:
    return build_console(world, public_url=PUBLIC, forwarded_allow_ips=("10.0.0.0/8",))


class Browser:
    """A browser at ``address`` reaching the console through the proxy: it speaks https to
    the public origin; the proxy speaks http to the console and forwards what it knows."""

    def __init__(self, cw: ConsoleWorld, address: str, *, via: tuple[str, int] = PROXY) -> None:
        self.http = TestClient(cw.app, base_url=UPSTREAM, client=via)
        self.http.headers.update(
            {"origin": PUBLIC, "x-forwarded-proto": "https", "x-forwarded-for": address}
        )
        self.cookies: dict[str, str] = {}

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._keep(self.http.post(path, headers=self._cookie(), **kwargs))

    def get(self, path: str) -> httpx.Response:
        return self._keep(self.http.get(path, headers=self._cookie()))

    def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return self.post("/api/v1/session", json={"username": username, "password": password})

    def _cookie(self) -> dict[str, str]:
        # the browser keeps Secure cookies for the https origin; the proxy passes them on
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def _keep(self, answer: httpx.Response) -> httpx.Response:
        for header in answer.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return answer


def test_behind_a_tls_proxy_a_browser_signs_in_searches_and_listens(cw: ConsoleWorld) -> None:
    stored = cw.world.store_call("c-proxy").recording_id
    browser = Browser(cw, "203.0.113.7")
    answer = browser.sign_in("qa1")
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    found = browser.post("/api/v1/recordings/search", json={"phone_numbers": [CUSTOMER_PHONE]})
    assert found.status_code == 200, found.text
    assert [i["recording_id"] for i in found.json()["items"]] == [stored]
    match = re.search(
        r'name="csrf_token" value="([^"]+)"', browser.get(f"/recordings/{stored}").text
    )
    assert match is not None
    player = browser.post(
        f"/recordings/{stored}/listen", data={"csrf_token": match.group(1), "purpose": "quality"}
    )
    assert player.status_code == 200, player.text
    assert 'id="player"' in player.text


def test_behind_the_proxy_other_origins_are_still_refused(cw: ConsoleWorld) -> None:
    browser = Browser(cw, "203.0.113.7")
    assert browser.sign_in("qa1").status_code == 200
    for origin in ("https://evil.example", UPSTREAM):  # nor is the proxy's side the browser's
        browser.http.headers["origin"] = origin
        refused = browser.post("/api/v1/recordings/search", json={"call_ids": ["x"]})
        assert refused.status_code == 403


def test_the_throttle_sees_the_browsers_address_not_the_proxys(cw: ConsoleWorld) -> None:
    attacker, colleague = Browser(cw, "203.0.113.66"), Browser(cw, "198.51.100.20")
    for _ in range(6):
        attacker.sign_in("qa1", "wrong-password")
    assert attacker.sign_in("qa1").status_code == 429
    assert colleague.sign_in("qa1").status_code == 200  # another address behind the same proxy


def test_an_untrusted_peer_cannot_choose_its_address(cw: ConsoleWorld) -> None:
    """X-Forwarded-For from anyone but the proxy is ignored: changing it evades nothing."""
    stranger = ("192.0.2.9", 5000)
    for n in range(6):
        Browser(cw, f"198.51.100.{n}", via=stranger).sign_in("qa1", "wrong-password")
    assert Browser(cw, "198.51.100.99", via=stranger).sign_in("qa1").status_code == 429


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("public_url", "calls.example.lt"),
        ("public_url", "https://calls.example.lt/console"),
        ("public_url", "ftp://calls.example.lt"),
        ("forwarded_allow_ips", "proxy.example.lt"),
        ("forwarded_allow_ips", "*"),
    ],
)
def test_a_bad_proxy_setting_stops_start_up(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"CALLVAULT_{name.upper()}"):
        make_settings(**{name: value})


def test_an_https_public_url_makes_cookies_secure() -> None:
    settings = make_settings(
        public_url="HTTPS://Calls.Example.LT/", forwarded_allow_ips="127.0.0.1, 10.0.0.0/8"
    )
    assert settings.public_url == "https://calls.example.lt"
    assert settings.forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8")
    assert settings.secure_cookies
    assert not make_settings(public_url="http://127.0.0.1:8080").secure_cookies
