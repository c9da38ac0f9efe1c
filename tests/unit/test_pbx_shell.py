"""The PBX lines docs/telephony.md tells shops to install, run as the PBX runs them: the
dialplan's values put into the command, the command through a real ``/bin/sh -c``, its argv
through ``callvault connect asterisk-mixmonitor``. A caller presenting shell syntax or an option
as their number must neither run a command nor change what callvault does with the call."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import WAV

from tests.fakes.connectors import Rig
from workers.entrypoints import connect
from workers.entrypoints.cli import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "telephony.md"
SHOP = "852144500"


def hostile_callers(marker: Path) -> list[str]:
    return [f"1;$(id>{marker})", "1 --no-notice", f"1`id>{marker}`", f"1' ; id>{marker}; '"]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


# --- Asterisk's dialplan substitution ------------------------------------------------------------


def _filter(allowed: str, value: str) -> str:
    """FILTER(allowed,value): the characters of value that are in allowed (ranges like 0-9)."""
    keep: set[str] = set()
    i = 0
    while i < len(allowed):
        if i + 2 < len(allowed) and allowed[i + 1] == "-":
            keep |= {chr(c) for c in range(ord(allowed[i]), ord(allowed[i + 2]) + 1)}
            i += 3
        else:
            keep.add(allowed[i])
            i += 1
    return "".join(ch for ch in value if ch in keep)


def asterisk_expand(text: str, variables: dict[str, str], opener: str = "${") -> str:
    """Asterisk's substitution: innermost expressions first, values inserted as they are
    (a value holding ``${`` is not substituted again)."""
    out, i = [], 0
    while i < len(text):
        if not text.startswith(opener, i):
            out.append(text[i])
            i += 1
            continue
        depth, j = 1, i + 2
        while depth:
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            depth -= text[j] == "}"
            j += 1
        inner = asterisk_expand(text[i + 2 : j - 1], variables)
        if function := re.fullmatch(r"FILTER\(([^,]*),(.*)\)", inner, re.DOTALL):
            out.append(_filter(function[1], function[2]))
        else:
            out.append(variables.get(inner, ""))
        i = j
    return "".join(out)


def asterisk_post_command(channel: dict[str, str]) -> str:
    """What the documented extensions.conf lines leave for MixMonitor to run at hang-up."""
    (block,) = [b for b in code_blocks("ini") if "MixMonitor(" in b]
    variables = dict(channel)
    command = None
    for line in block.splitlines():
        application = re.search(r"n,(\w+)\((.*)\)\s*$", line)
        if application is None:
            continue
        name, data = application[1], application[2]
        if name == "Set":
            variable, _, value = data.partition("=")
            variables[variable] = asterisk_expand(value, variables)
        elif name == "MixMonitor":
            _file, _options, command = asterisk_expand(data, variables).split(",", 2)
    assert command is not None, "the documented dialplan runs no MixMonitor post-command"
    return asterisk_expand(command, variables, opener="^{")  # ^{...}: at the end of the call


# --- FreeSWITCH's XML dialplan ------------------------------------------------------------------


def freeswitch_expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]*)\}", lambda m: variables.get(m[1], ""), text)


def freeswitch_post_command(channel: dict[str, str], recordings_dir: Path) -> str:
    """The channel's record_post_process_exec_api after the documented extension ran."""
    blocks = [b for b in code_blocks("xml") if "record_post_process_exec_api" in b]
    assert blocks, "docs/telephony.md has no FreeSWITCH dialplan for the post-command"
    (block,) = blocks
    xml = block.replace("$${recordings_dir}", str(recordings_dir))
    extension = ET.fromstring(xml)  # noqa: S314 - our own documentation, not a stranger's XML
    variables = dict(channel)
    for condition in extension.iter("condition"):
        field = condition.get("field")
        match = re.search(condition.get("expression", ""), variables.get(field or "", ""))
        chosen = "action" if field is None or match else "anti-action"
        for action in condition.iter(chosen):
            assert action.get("application") == "set"
            data = action.get("data", "")
            if match is not None:
                data = re.sub(r"\$(\d)", lambda m, found=match: found[int(m[1])] or "", data)
            name, _, value = data.partition("=")
            variables[name] = freeswitch_expand(value, variables)
    api = variables["record_post_process_exec_api"]
    assert api.startswith("system:")
    return api.removeprefix("system:")


# --- the shell and callvault ---------------------------------------------------------------------


def run_in_shell(command: str, tmp_path: Path) -> list[str]:
    """``/bin/sh -c command`` with a ``callvault`` that writes down its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    argv = tmp_path / "argv.json"
    fake = bin_dir / "callvault"
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(argv)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["/bin/sh", "-c", command], env=env, check=False, timeout=30)
    found: list[str] = json.loads(argv.read_text())
    return found


@contextmanager
def connector(rig: Rig) -> Iterator[None]:
    @contextmanager
    def publisher(*_: Any) -> Iterator[Any]:
        yield rig.publisher

    saved = connect._publisher
    connect._publisher = publisher
    try:
        yield
    finally:
        connect._publisher = saved


def hand_over(argv: list[str], rig: Rig) -> dict[str, Any]:
    """The argv the shell produced, run as ``callvault`` itself; the call.ended data sent."""
    with connector(rig):
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (data,) = rig.kafka.data()
    return data


PostCommand = Callable[[str, Path], tuple[str, Path]]


def asterisk(caller: str, tmp_path: Path) -> tuple[str, Path]:
    monitor = tmp_path / "monitor"
    monitor.mkdir(exist_ok=True)
    recording = monitor / "1710411300.12.wav"
    recording.write_bytes(WAV)
    channel = {
        "CALLERID(num)": caller,
        "EXTEN": SHOP,
        "UNIQUEID": "1710411300.12",
        "LINKEDID": "1710411300.11",
        "MIXMONITOR_FILENAME": str(recording),
    }
    return asterisk_post_command(channel), recording


def freeswitch(caller: str, tmp_path: Path) -> tuple[str, Path]:
    recordings = tmp_path / "recordings"
    recordings.mkdir(exist_ok=True)
    uuid = "0d8e4c6a-5b7e-4b1a-9d52-0c3f3c1f2a10"
    recording = recordings / f"{uuid}.wav"
    recording.write_bytes(WAV)
    channel = {"caller_id_number": caller, "destination_number": SHOP, "uuid": uuid}
    return freeswitch_post_command(channel, recordings), recording


@pytest.mark.parametrize(
    ("pbx", "kept"),
    [(asterisk, lambda caller: _filter("0-9+*#", caller)), (freeswitch, lambda _: "anonymous")],
    ids=["asterisk", "freeswitch"],  # Asterisk's FILTER keeps the digits; FreeSWITCH withholds
)
@pytest.mark.parametrize("which", range(4), ids=["subshell", "option", "backticks", "quote"])
def test_a_hostile_caller_id_runs_nothing_and_changes_nothing(
    pbx: PostCommand, kept: Callable[[str], str], which: int, tmp_path: Path
) -> None:
    marker = tmp_path / "x"
    caller = hostile_callers(marker)[which]
    command, recording = pbx(caller, tmp_path)
    argv = run_in_shell(command, tmp_path)
    assert not marker.exists()  # no command ran
    data = hand_over(argv, Rig(tmp_path / "state"))
    assert data["notice_played"] is True  # no option slipped in: the recording is kept
    assert (data["caller"], data["callee"]) == (kept(caller), SHOP)
    assert not recording.exists()  # sent, then deleted as usual


def test_a_plain_number_reaches_callvault_as_it_was_presented(tmp_path: Path) -> None:
    command, _ = asterisk("+37061234567", tmp_path)
    data = hand_over(run_in_shell(command, tmp_path), Rig(tmp_path / "state"))
    assert data["caller"] == "+37061234567"
