"""Every format callvault accepts plays in the console's player in headless Chromium: time
advances, the duration is the call's, speed and keys work, and a two-channel call lets the
listener hear the customer, the agent or both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.probes import wait_for
from testbed.stack import drop_instance, new_instance
from tests.audio_formats import DECLARED, make_formats
from tests.e2e.console_harness import Console, start_console, store_calls
from tests.e2e.harness import Callvault
from tests.e2e.test_console import after_click, choose_purpose, chromium, sign_in

SECONDS = 8.0
FORMATS = [
    "ulaw.wav",
    "alaw.wav",
    "gsm.wav",
    "raw.ul",
    "raw.al",
    "raw.gsm",
    "cbr.mp3",
    "voice.opus",
    "stereo.flac",
    "stereo.wav",
]
TOLERANCE = {"cbr.mp3": 0.3}  # an MP3's encoder delay and padding


@pytest.fixture(scope="module")
def player(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Console, dict[str, str]]]:
    formats = make_formats(tmp_path_factory.mktemp("formats"), SECONDS, stereo_split=True)
    instance = new_instance(stack, prefix="pl")
    cv = Callvault(instance, tmp_path_factory.mktemp("player"))
    try:
        cv.migrate()
        cv.start_worker()
        console = start_console(cv)
        calls = {
            f"pl-{name}": {
                "audio": (formats / name).read_bytes(),
                "content_type": DECLARED.get(name),
            }
            for name in FORMATS
        }
        stored = store_calls(cv, calls)
        yield console, {name: stored[f"pl-{name}"] for name in FORMATS}
    finally:
        cv.stop_all()
        drop_instance(instance)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium for the module: playing is the same in either language."""
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def listen(driver: Any, player: tuple[Console, dict[str, str]], name: str) -> Any:
    """The QA lead signs in, opens the recording of ``name`` for quality and plays it."""
    console, recordings = player
    driver.delete_all_cookies()
    sign_in(driver, console, "qa")
    choose_purpose(driver, console, recordings[name], "quality")
    audio = after_click(driver, "#player")
    driver.execute_script("arguments[0].play()", audio)
    wait_for(lambda: prop(driver, audio, "currentTime") > 0.5, 20, "the recording playing")
    return audio


def prop(driver: Any, element: Any, name: str) -> Any:
    return driver.execute_script(f"return arguments[0].{name}", element)


@pytest.mark.parametrize("name", FORMATS)
def test_every_accepted_format_plays_in_chromium(
    player: tuple[Console, dict[str, str]], browser: Any, name: str
) -> None:
    driver = browser
    audio = listen(driver, player, name)
    assert prop(driver, audio, "error") is None
    assert prop(driver, audio, "duration") == pytest.approx(SECONDS, abs=TOLERANCE.get(name, 0.05))
    before = prop(driver, audio, "currentTime")
    wait_for(lambda: prop(driver, audio, "currentTime") > before + 0.3, 10, "time advancing")


def test_speed_keys_and_the_voices_of_a_stereo_call(
    player: tuple[Console, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver = browser
    audio = listen(driver, player, "stereo.wav")

    def level() -> float:
        return float(driver.find_element(By.ID, "level").get_attribute("value"))

    # inbound: the customer called, so the customer is on the left (the loud sweep) and the
    # agent on the right (a quiet tone)
    for voice, heard in (("agent", lambda: 0 < level() < 0.3), ("customer", lambda: level() > 0.6)):
        driver.find_element(By.CSS_SELECTOR, f'input[name=voice][value="{voice}"]').click()
        wait_for(heard, 10, f"only the {voice} heard")
    driver.find_element(By.CSS_SELECTOR, 'input[name=voice][value="both"]').click()
    wait_for(lambda: level() > 0.6, 10, "both heard")

    driver.execute_script("arguments[0].pause()", audio)
    Select(driver.find_element(By.ID, "speed")).select_by_value("2")
    assert prop(driver, audio, "playbackRate") == 2
    body = driver.find_element(By.TAG_NAME, "body")
    for key, expected in (("<", 1.5), ("<", 1.25), (">", 1.5)):
        body.send_keys(key)
        assert prop(driver, audio, "playbackRate") == expected
    for key, at in ((Keys.HOME, 0.0), (Keys.ARROW_RIGHT, 5.0), (Keys.ARROW_LEFT, 0.0), ("5", 4.0)):
        body.send_keys(key)
        wait_for(
            lambda at=at: prop(driver, audio, "currentTime") == pytest.approx(at, abs=0.01),
            5,
            f"at {at} s",
        )
    body.send_keys(Keys.END)
    wait_for(
        lambda: prop(driver, audio, "currentTime") == pytest.approx(SECONDS, abs=0.05),
        5,
        "at the end",
    )
    driver.save_screenshot(str(tmp_path / "player-stereo.png"))
