"""``callvault serve`` on the real stack: an API client holding only a token, and a person in
headless Chromium (Debian's, driven through chromium-driver). One instance, worker and server
for the whole module, to keep the suite's cost to a couple of minutes."""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
from calendar import monthrange
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from testbed.probes import wait_for
from testbed.stack import drop_instance, new_instance
from tests.e2e.console_harness import (
    PASSWORD,
    Console,
    behind_tls_proxy,
    download_zip,
    dsr,
    sha256,
    start_console,
    store_calls,
)
from tests.e2e.harness import Callvault, make_wav
from workers.domain.audio import pcm_wav
from workers.domain.calendar import LocalCalendar
from workers.i18n import Localizer

AUDIO = {
    "e2e-a": make_wav(3.0, tone=440.0),
    "e2e-b": make_wav(1.0, tone=660.0),
    "e2e-r": make_wav(1.0, tone=550.0),
}
CUSTOMER = {"name": "Ona Petraitienė", "email": "ona@example.lt", "order_ids": ["ORD-77"]}
RESTRICTED_PHONE = "+370 699 11111"
VILNIUS = LocalCalendar()
# A call at 00:30 in Vilnius three days ago: in UTC it was the evening of the day before.
NIGHT_DAY = VILNIUS.day_of(datetime.now(UTC)) - timedelta(days=3)
NIGHT_START = VILNIUS.midnight(NIGHT_DAY) + timedelta(minutes=30)


def hour_of_audio() -> bytes:
    """One hour of 8 kHz 16-bit mono speech-band tone: a 57.6 MB WAV."""
    second = b"".join(struct.pack("<h", (i * 37) % 4000 - 2000) for i in range(8000))
    return pcm_wav(second * 3600)


@pytest.fixture(scope="module")
def console(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    instance = new_instance(stack, prefix="cs")
    cv = Callvault(instance, tmp_path_factory.mktemp("console"))
    try:
        cv.migrate()
        cv.start_worker()
        served = start_console(cv)
        served.recordings = store_calls(
            cv,
            {
                "e2e-a": {"audio": AUDIO["e2e-a"], "customer": CUSTOMER},
                "e2e-b": {"audio": AUDIO["e2e-b"], "caller": "(8 5) 271 2804"},
                "e2e-r": {"audio": AUDIO["e2e-r"], "caller": RESTRICTED_PHONE},
                "e2e-night": {
                    "caller": "+370 655 12345",
                    "ended": NIGHT_START + timedelta(minutes=3),
                },
            },
        )
        restricted = dsr(cv, "restriction", {"phone_numbers": ["8 699 11111"]})
        assert [r["outcome"] for r in restricted["recordings"]] == ["restricted"]
        yield served
    finally:
        cv.stop_all()
        drop_instance(instance)


def rid(console: Console, call_id: str) -> str:
    return console.recordings[call_id]


def audio_path(recording_id: str, purpose: str, case_ref: str | None = None) -> str:
    path = f"/api/v1/recordings/{recording_id}/audio?purpose={purpose}"
    return path + (f"&case_ref={case_ref}" if case_ref else "")


def test_a_token_client_searches_by_national_notation_and_listens(console: Console) -> None:
    found = console.as_role(
        "qa", "POST", "/api/v1/recordings/search", {"phone_numbers": ["8 612 34567"]}
    )
    assert found.status == 200
    items = found.json()["items"]
    assert [i["call_id"] for i in items] == ["e2e-a"]
    assert items[0]["restricted"] is False
    recording_id = items[0]["recording_id"]
    whole = console.as_role("qa", "GET", audio_path(recording_id, "training"))
    assert whole.status == 200
    assert whole.body == AUDIO["e2e-a"]
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["cache-control"] == "no-store"
    part = console.as_role(
        "qa", "GET", audio_path(recording_id, "quality"), headers={"range": "bytes=40000-"}
    )
    assert part.status == 206
    assert part.body == AUDIO["e2e-a"][40000:]
    log = console.as_role("dpo", "GET", f"/api/v1/access-log?recording_id={recording_id}")
    entries = log.json()["items"]
    assert [(e["user"], e["purpose"]) for e in entries] == [("qa", "quality"), ("qa", "training")]
    assert set(entries[0]) == {"at", "user", "purpose", "case_ref", "recording_id"}


def test_refusals_follow_the_contract(console: Console) -> None:
    restricted = rid(console, "e2e-r")
    for method, path in (
        ("POST", "/api/v1/recordings/search"),
        ("GET", audio_path(restricted, "quality")),
        ("GET", "/api/v1/access-log"),
        ("POST", "/api/v1/disclosures"),
    ):
        assert console.request(method, path, body={}).status == 401, path
    assert console.as_role("qa", "GET", "/api/v1/access-log").status == 403
    assert (
        console.as_role("admin", "POST", "/api/v1/recordings/search", {"call_ids": ["x"]}).status
        == 403
    )
    assert console.as_role("cx", "POST", "/api/v1/disclosures", {}).status == 403
    assert console.as_role("qa", "GET", audio_path(restricted, "complaint", "C-1")).status == 403
    assert console.as_role("dpo", "GET", audio_path(restricted, "quality")).status == 403
    claim = console.as_role("dpo", "GET", audio_path(restricted, "legal_claim", "LC-1"))
    assert claim.status == 200
    assert claim.body == AUDIO["e2e-r"]
    erased = dsr(console.cv, "erasure", {"phone_numbers": ["8 5 271 2804"]})
    assert [r["outcome"] for r in erased["recordings"]] == ["erased"]
    gone = console.as_role("qa", "GET", audio_path(rid(console, "e2e-b"), "quality"))
    assert gone.status == 404
    unknown = "00000000-0000-4000-8000-000000000000"
    assert console.as_role("qa", "GET", audio_path(unknown, "quality")).status == 404


def test_disclosures_reach_the_recipient_and_the_subject_learns_of_them(
    console: Console,
) -> None:
    recording_id = rid(console, "e2e-a")
    answers = {}
    for kind, recipient in (("telecom_provider", "Telia Lietuva"), ("law_enforcement", "Policija")):
        answer = console.as_role(
            "dpo",
            "POST",
            "/api/v1/disclosures",
            {
                "recipient": recipient,
                "recipient_kind": kind,
                "legal_basis": "GDPR Art. 6(1)(c)",
                "reference": f"REF-{kind}",
                "recording_ids": [recording_id],
            },
        )
        assert answer.status == 200, answer.body
        answers[kind] = answer.json()
    export = answers["telecom_provider"]["export"]
    package = download_zip(export["url"])
    manifest = json.loads(package.read("manifest.json"))
    assert manifest["disclosure"]["recipient"] == "Telia Lietuva"
    assert package.read(manifest["recordings"][0]["audio_file"]) == AUDIO["e2e-a"]
    access = dsr(console.cv, "access", {"emails": ["ONA@example.lt"]})
    subject_view = json.loads(download_zip(access["export"]["url"]).read("manifest.json"))
    assert [r["recipient"] for r in subject_view["recipients"]] == ["Telia Lietuva"]
    assert "Policija" not in json.dumps(subject_view)
    purposes = {c["purpose"] for c in subject_view["recordings"][0]["consultations"]}
    assert purposes == {"training", "quality"}
    assert '"qa"' not in json.dumps(subject_view)  # when and why, never who


def test_holds_placed_through_the_api_are_in_force_at_once(console: Console) -> None:
    placed = console.as_role(
        "dpo",
        "POST",
        "/api/v1/holds",
        {"hold_id": "H-e2e", "reason": "dispute", "scope": {"call_ids": ["e2e-a"]}},
    )
    assert placed.status == 201  # in force when the DPO reads the answer

    def listed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = console.as_role("dpo", "GET", "/api/v1/holds").json()["items"]
        return items

    assert [h["hold_id"] for h in listed()] == ["H-e2e"]
    assert listed()[0]["recordings"][0]["call_id"] == "e2e-a"
    assert console.as_role("dpo", "POST", "/api/v1/holds/H-e2e/release").status == 200
    assert listed() == []


def test_one_hour_call_seeks_without_the_server_holding_it(console: Console) -> None:
    audio = hour_of_audio()
    hour = {"e2e-hour": {"audio": audio, "caller": "+370 600 00001"}}
    recording_id = store_calls(console.cv, hour)["e2e-hour"]
    before = peak_memory(console)
    seek = 50 * 60 * 16000 + 44  # fifty minutes in
    part = console.as_role(
        "qa",
        "GET",
        audio_path(recording_id, "quality"),
        headers={"range": f"bytes={seek}-{seek + 999}"},
    )
    assert part.status == 206
    assert part.body == audio[seek : seek + 1000]
    whole = console.as_role("qa", "GET", audio_path(recording_id, "quality"))
    assert sha256(whole.body) == sha256(audio)
    grown = peak_memory(console) - before
    assert grown < 24 * 1024 * 1024, f"serving a 57.6 MB call grew the server by {grown} bytes"


def peak_memory(console: Console) -> int:
    status = Path(f"/proc/{console.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


# --- a person in a browser --------------------------------------------------------------------
# What the person reads and types, in each language the console speaks (the browser asks for it).
SAYS = {
    "lt": {
        "restricted": "18 straipsnis",
        "released": "panaikintas",
        "registered": "užregistruotas",
        "intact": "Maišos grandinė nepažeista",
        "no page": "tokio puslapio nėra",
        "retention": "1 metai nuo pokalbio pabaigos",
        "no match": "Atitinkančių saugomų įrašų nėra.",
        "hold reason": "vartotojo ginčas dėl užsakymo",
        "recipient": "Veterinarijos klinika „Gyvūnėlis“",
        "legal basis": "BDAR 6 straipsnio 1 dalies f punktas",
    },
    "en": {
        "restricted": "Art. 18",
        "released": "released",
        "registered": "registered",
        "intact": "Hash chain intact",
        "no page": "there is no such page",
        "retention": "1 year after the call ends",
        "no match": "No stored recording matches.",
        "hold reason": "consumer dispute about an order",
        "recipient": "Vet clinic Gyvūnėlis",
        "legal basis": "GDPR Art. 6(1)(f)",
    },
}
# The browser's own locale for each language: it decides how a date field writes dates
# (lt: 2026-12-07; en-GB: 07/12/2026), and is the first language the browser asks for.
BROWSER_LOCALES = {"lt": "lt", "en": "en-GB"}


@contextmanager
def chromium(profile: Path, home: Path | None = None, language: str = "en") -> Iterator[Any]:
    """Debian's headless Chromium through chromium-driver, its user reading ``language``: its
    interface in that locale (on Linux Chromium takes it from LANGUAGE, not from --lang, and
    needs chromium-l10n) and its Accept-Language; ``home`` holds the certificates it trusts
    (its NSS database), when a test gives it one."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    locale = BROWSER_LOCALES[language]
    accepted = ",".join(dict.fromkeys((locale, language)))  # "lt" / "en-GB,en"
    options = webdriver.ChromeOptions()
    options.add_experimental_option("prefs", {"intl.accept_languages": accepted})
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations land here
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,900",
        f"--accept-lang={accepted}",
        f"--lang={locale}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    env = {**os.environ, "LANGUAGE": locale.replace("-", "_")}
    if home:
        env["HOME"] = str(home)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver", env=env))
    driver.set_page_load_timeout(30)
    driver.language = language
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module", params=["lt", "en"])
def browser(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium"), language=request.param) as driver:
        yield driver


def screenshots_dir(tmp_path: Path, language: str) -> Path:
    """docs/screenshots/LANGUAGE when CALLVAULT_SCREENSHOTS=1 (to refresh the docs), else tmp."""
    if os.environ.get("CALLVAULT_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "screenshots" / language
    return tmp_path / language


def sign_in(driver: Any, console: Console, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(console.base + "/login")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(lambda: "/login" not in driver.current_url, 15, "signed in")


def sign_out(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "form.who button").click()
    wait_for(lambda: "/login" in driver.current_url, 15, "signed out")


def after_click(driver: Any, css: str) -> Any:
    """The element the page loaded by a click shows (a click does not wait for the load)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 20).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def choose_purpose(driver: Any, console: Console, recording_id: str, purpose: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(f"{console.base}/recordings/{recording_id}")
    assert not driver.find_elements(By.TAG_NAME, "audio")  # no player before the purpose
    Select(driver.find_element(By.NAME, "purpose")).select_by_value(purpose)
    driver.find_element(By.CSS_SELECTOR, "#purpose-form button").click()


def pick_day(driver: Any, name: str, day: date) -> None:
    """A day chosen in a date field (its calendar widget is the browser's own)."""
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.NAME, name)
    driver.execute_script("arguments[0].value = arguments[1]", field, day.isoformat())


def search(driver: Any, console: Console, phone: str, day: date | None = None) -> list[str]:
    """The recordings the search form finds for a phone number (and a day: from and to)."""
    from selenium.webdriver.common.by import By

    driver.get(console.base + "/search")
    driver.find_element(By.NAME, "phone").send_keys(phone)
    if day:
        pick_day(driver, "from", day)
        pick_day(driver, "to", day)
    driver.find_element(By.CSS_SELECTOR, "#search button").click()
    after_click(driver, "#results, #no-results")
    rows = driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    return [r.get_attribute("data-recording-id") for r in rows]


PLACEHOLDER = re.compile(r"%\(\w+\)[sdr]|%%|&lt;|&gt;")


@cache
def foreign_texts(language: str) -> tuple[list[str], list[str]]:
    """The phrases and the one-word texts of the other languages' catalogues that this
    language's own texts never use: found on a page, they were left untranslated."""
    from workers.i18n.catalogues import LANGUAGES, read

    def texts(of: str) -> list[str]:
        found: list[str] = []
        for message in read(of):
            if message.id:
                strings = message.string
                found += list(strings) if isinstance(strings, tuple | list) else [strings]
        return found

    own = "\n".join(texts(language))
    own_words = set(re.findall(r"\w+", own))
    phrases, words = set(), set()
    for other in LANGUAGES:
        for text in texts(other) if other != language else ():
            if re.fullmatch(r"[^\W\d_]{4,}", text):
                words.add(text)
            for part in PLACEHOLDER.split(text):
                part = part.strip(" .,:;()\N{EN DASH}-")
                if " " in part and len(part) >= 8:
                    phrases.add(part)
    return (
        sorted(p for p in phrases if p not in own),
        sorted(w for w in words if w not in own_words),
    )


def reads_in(driver: Any, language: str) -> None:
    """Everything the page shows is in ``language``: no text of another catalogue is on it."""
    from selenium.webdriver.common.by import By

    shown = driver.find_element(By.TAG_NAME, "body").text
    phrases, words = foreign_texts(language)
    left = [p for p in phrases if p in shown]
    left += [w for w in words if re.search(rf"\b{re.escape(w)}\b", shown)]
    assert not left, f"{driver.current_url} shows, untranslated: {left}"


def whole_page(driver: Any, path: Path) -> None:
    """A screenshot of the whole page, below the window's edge too."""
    width, height = driver.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.scrollHeight];"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def a_month_after(day: date) -> date:
    """The same day of the next month (its last day when it has no such day)."""
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following.replace(day=min(day.day, monthrange(following.year, following.month)[1]))


def test_a_person_in_the_browser(console: Console, browser: Any, tmp_path: Path) -> None:
    """A QA lead, a DPO and an administrator do their day in the browser, once in each
    language: every page in that language, every day and time a Vilnius one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    language = browser.language
    says = SAYS[language]
    l10n = Localizer(language)  # how a reader of the language writes Vilnius days and times
    shots = screenshots_dir(tmp_path, language)
    shots.mkdir(parents=True, exist_ok=True)
    driver = browser

    def shown(name: str) -> None:
        reads_in(driver, language)
        whole_page(driver, shots / name)

    driver.get(console.base + "/login")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == language
    # the browser itself speaks the language: its date fields write dates as its people do
    locale = driver.execute_script("return Intl.DateTimeFormat().resolvedOptions().locale")
    assert locale == BROWSER_LOCALES[language]
    shown("login.png")

    # the QA lead: a call at 00:30 in Vilnius, on a day that began the evening before in UTC,
    # found by its national notation and its Vilnius day; the UTC day does not find it
    sign_in(driver, console, "qa")
    night = rid(console, "e2e-night")
    assert search(driver, console, "8 655 12345", NIGHT_DAY) == [night]
    started = driver.find_element(By.CSS_SELECTOR, f'tr[data-recording-id="{night}"] time')
    assert started.get_attribute("datetime").startswith(f"{NIGHT_DAY.isoformat()}T00:30:00+0")
    assert started.text == l10n.when(started.get_attribute("datetime"))
    shown("search.png")
    assert search(driver, console, "8 655 12345", NIGHT_DAY - timedelta(days=1)) == []
    assert says["no match"] in driver.find_element(By.ID, "no-results").text

    # ... chooses a purpose and listens
    driver.get(f"{console.base}/recordings/{rid(console, 'e2e-a')}")
    shown("recording.png")
    choose_purpose(driver, console, rid(console, "e2e-a"), "training")
    player = after_click(driver, "#player")
    driver.execute_script("arguments[0].play()", player)
    wait_for(
        lambda: driver.execute_script("return arguments[0].currentTime", player) > 0.2,
        20,
        "the audio playing",
    )
    duration = driver.execute_script("return arguments[0].duration", player)
    assert abs(duration - 3.0) < 0.05
    digest = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0].currentSrc).then(r => r.arrayBuffer())
          .then(b => crypto.subtle.digest('SHA-256', b))
          .then(h => done(Array.from(new Uint8Array(h))
            .map(x => x.toString(16).padStart(2, '0')).join('')));""",
        player,
    )
    assert digest == sha256(AUDIO["e2e-a"])
    shown("player.png")

    # a restricted recording is refused before any player appears
    choose_purpose(driver, console, rid(console, "e2e-r"), "quality")
    assert says["restricted"] in after_click(driver, "#refusal").text
    assert not driver.find_elements(By.TAG_NAME, "audio")
    shown("refused.png")
    sign_out(driver)

    # the DPO: the overview, whose chart legends wrap rather than run into each other
    sign_in(driver, console, "dpo")
    driver.get_log("browser")  # the refusal above was logged as a failed load; start afresh
    driver.get(console.base + "/dpo")
    legend = driver.execute_script(
        """return Array.from(document.querySelectorAll('ul.legend li'), e => {
             const r = e.getBoundingClientRect(), u = e.parentElement.getBoundingClientRect();
             return [r.left, r.top, r.right, r.bottom, u.right]; });"""
    )
    assert len(legend) == 5
    for i, (left, top, right, bottom, edge) in enumerate(legend):
        assert right <= edge + 0.5, "a legend runs out of its chart"
        for other in legend[i + 1 :]:
            apart = right <= other[0] or other[2] <= left or bottom <= other[1] or other[3] <= top
            assert apart, f"legend items overlap: {legend}"
    shown("overview.png")

    # ... places a hold and releases it
    driver.get(console.base + "/dpo/holds")
    driver.find_element(By.NAME, "reason").send_keys(says["hold reason"])
    hold_id = f"H-browser-{language}"
    driver.find_element(By.NAME, "hold_id").send_keys(hold_id)
    Select(driver.find_element(By.NAME, "scope_kind")).select_by_value("call_ids")
    driver.find_element(By.NAME, "targets").send_keys("e2e-a")
    driver.find_element(By.CSS_SELECTOR, "#place-hold button").click()
    assert hold_id in after_click(driver, "#notice").text

    def hold_row() -> list[Any]:
        driver.get(console.base + "/dpo/holds")
        return list(driver.find_elements(By.CSS_SELECTOR, f'tr[data-hold-id="{hold_id}"]'))

    wait_for(lambda: bool(hold_row()), 60, "the hold listed")
    assert "e2e-a" in hold_row()[0].text
    placed = hold_row()[0].find_element(By.TAG_NAME, "time")
    assert placed.text == l10n.when(placed.get_attribute("datetime"))
    shown("holds.png")
    hold_row()[0].find_element(By.CSS_SELECTOR, "button").click()
    assert says["released"] in after_click(driver, "#notice").text
    wait_for(lambda: not hold_row(), 60, "the hold gone")

    # ... discloses a recording to a recipient
    driver.get(console.base + "/dpo/disclosures")
    driver.find_element(By.NAME, "recipient").send_keys(says["recipient"])
    Select(driver.find_element(By.NAME, "recipient_kind")).select_by_value("other")
    driver.find_element(By.NAME, "legal_basis").send_keys(says["legal basis"])
    driver.find_element(By.NAME, "reference").send_keys("INC-2026-4")
    driver.find_element(By.NAME, "recording_ids").send_keys(rid(console, "e2e-a"))
    driver.find_element(By.CSS_SELECTOR, "#disclose button").click()
    link = after_click(driver, "#package-link").get_attribute("href")
    package = download_zip(link)
    assert (
        json.loads(package.read("manifest.json"))["disclosure"]["recipient"] == (says["recipient"])
    )
    shown("disclosures.png")

    # ... registers a request that came by letter on the night's day: its deadline is that
    # Vilnius day a month later; the worker carries it out
    driver.get(console.base + "/dpo/requests")
    Select(driver.find_element(By.NAME, "type")).select_by_value("access")
    pick_day(driver, "received_on", NIGHT_DAY)
    Select(driver.find_element(By.NAME, "channel")).select_by_value("letter")
    Select(driver.find_element(By.NAME, "verification")).select_by_value("id_document")
    Select(
        driver.find_element(By.CSS_SELECTOR, "#register-request [name=language]")
    ).select_by_value(language)
    driver.find_element(By.NAME, "phone").send_keys("8 655 12345")
    request_id = driver.find_element(By.NAME, "request_id").get_attribute("value")
    driver.find_element(By.CSS_SELECTOR, "#register-request button").click()
    notice = after_click(driver, "#notice").text
    assert says["registered"] in notice
    assert notice.endswith(f" {l10n.day(a_month_after(NIGHT_DAY))}."), notice

    def answered() -> list[Any]:
        driver.get(console.base + "/dpo/requests")
        return list(
            driver.find_elements(By.CSS_SELECTOR, f'#answered tr[data-request-id="{request_id}"]')
        )

    wait_for(lambda: bool(answered()), 60, "the registered request answered")
    row = answered()[0]
    assert l10n.day(a_month_after(NIGHT_DAY)) in row.text
    answer = download_zip(row.find_element(By.CSS_SELECTOR, "a[href]").get_attribute("href"))
    assert f'<html lang="{language}">' in answer.read("letter.html").decode()  # to send on
    shown("requests.png")

    # ... reads who listened to what, and why, in local time
    driver.get(console.base + "/dpo/access-log")
    heard = driver.find_element(By.CSS_SELECTOR, f'tr[data-recording-id="{rid(console, "e2e-a")}"]')
    at = heard.find_element(By.TAG_NAME, "time")
    assert at.text == l10n.when(at.get_attribute("datetime"), seconds=True)
    offset = datetime.now(VILNIUS.zone).strftime("%z")
    assert at.get_attribute("datetime").endswith(f"{offset[:3]}:{offset[3:]}")
    shown("access-log.png")

    # ... and the month's report for the supervisory authority
    driver.get(console.base + "/dpo/report")
    assert says["retention"] in driver.find_element(By.ID, "retention").text
    assert "Europe/Vilnius" in driver.find_element(By.ID, "period").text
    assert says["intact"] in driver.find_element(By.ID, "audit-state").text
    shown("report.png")

    driver.get(console.base + "/dpo/no-such-page")
    assert says["no page"] in after_click(driver, "#refusal").text
    shown("not-found.png")
    driver.get_log("browser")  # the page above answered 404, logged as a failed load
    driver.get(console.base + "/dpo")  # back on a page that loads
    # nothing the DPO's pages do was blocked by the Content-Security-Policy or failed to load
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    sign_out(driver)

    # the administrator: the staff, their tenants, and an API token made for oneself
    sign_in(driver, console, "admin")
    driver.get(console.base + "/admin/users")
    driver.find_element(By.CSS_SELECTOR, "#users form[action$='/token'] button").click()
    assert after_click(driver, "#new-token").text.startswith("cvt_")
    shown("users.png")
    sign_out(driver)


def trusting(home: Path, ca_file: str) -> Path:
    """A home whose NSS database trusts the local stack's CA (as a shop's managed browsers
    trust its own CA), nothing else added."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-n", "callvault local CA", "-t", "C,,", "-i", ca_file],
    ):
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", *args], check=True, timeout=60)
    return home


def test_a_person_behind_a_tls_reverse_proxy(
    console: Console, stack: dict[str, str], tmp_path: Path
) -> None:
    """Caddy terminates TLS with the local CA's certificate and rewrites Host; Chromium signs
    in, searches and plays through it, with Secure cookies and its own address on record."""
    from selenium.webdriver.common.by import By

    ca_file = stack["CALLVAULT_STACK_TLS_CA"]
    proxied = behind_tls_proxy(console.cv, ca_file, tmp_path)
    home = trusting(tmp_path / "home", ca_file)
    with chromium(tmp_path / "profile", home) as driver:
        sign_in(driver, proxied, "qa")
        assert driver.current_url.startswith(proxied.origin)
        assert [c["secure"] for c in driver.get_cookies() if c["name"] == "cv_session"] == [True]
        driver.get(proxied.base + "/search")
        driver.find_element(By.NAME, "phone").send_keys("8 612 34567")
        driver.find_element(By.CSS_SELECTOR, "#search button").click()
        after_click(driver, "#results")
        rows = driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")
        assert [r.get_attribute("data-recording-id") for r in rows] == [rid(console, "e2e-a")]
        choose_purpose(driver, proxied, rid(console, "e2e-a"), "quality")
        player = after_click(driver, "#player")
        driver.execute_script("arguments[0].play()", player)
        wait_for(
            lambda: driver.execute_script("return arguments[0].currentTime", player) > 0.2,
            20,
            "the audio playing through the proxy",
        )
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    answer = proxied.request("GET", "/api/v1/session")  # the proxy answers over https
    assert answer.status == 401
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


def test_accounts_are_managed_from_the_command_line(console: Console) -> None:
    from tests.e2e.console_harness import cli

    listed = cli(console.cv, "user", "list").stdout
    assert [line.split()[:3] for line in listed.splitlines()] == [
        ["admin", "admin", "active"],
        ["cx", "complaints", "active"],
        ["dpo", "dpo", "active"],
        ["qa", "qa", "active"],
    ]
    made = cli(console.cv, "token", "create", "qa")
    token = made.stdout.strip()
    token_id = made.stderr.split()[2]
    assert console.request("GET", "/api/v1/session", token=token).status == 200
    cli(console.cv, "token", "revoke", token_id)
    assert console.request("GET", "/api/v1/session", token=token).status == 401
    eve = ("user", "add", "eve", "--role", "qa")
    assert "--tenant" in subprocess_failure(console, *eve, stdin="a long enough one\n")
    short = subprocess_failure(console, *eve, "--tenant", "shop-lt", stdin="short\n")
    assert "at least 8 characters" in short
    cli(console.cv, *eve, "--tenant", "shop-lt", "--tenant", "*", stdin="a long enough one\n")
    session = console.request(
        "POST", "/api/v1/session", body={"username": "eve", "password": "a long enough one"}
    )
    assert session.status == 200
    assert "httponly" in session.headers["set-cookie"].lower()
    cli(console.cv, "user", "disable", "eve")
    again = console.request(
        "POST", "/api/v1/session", body={"username": "eve", "password": "a long enough one"}
    )
    assert again.status == 401


def subprocess_failure(console: Console, *args: str, stdin: str) -> str:
    import subprocess

    from tests.e2e.harness import CALLVAULT

    done = subprocess.run(
        [CALLVAULT, *args], env=console.cv.env, input=stdin, capture_output=True, text=True
    )
    assert done.returncode != 0
    return done.stderr
