"""Every ``callvault`` command that docs/runbooks.md or an alert's annotations tell an operator to
run exists, with the options they name: the installed ``callvault`` answers ``--help`` for each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RULES = ROOT / "deploy" / "prometheus" / "rules"
CALLVAULT = str(Path(sys.executable).parent / "callvault")
WORD = re.compile(r"[a-z][a-z0-9-]*")


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def documented_texts() -> dict[str, str]:
    texts = {"docs/runbooks.md": RUNBOOKS.read_text(encoding="utf-8")}
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                for name, value in rule.get("annotations", {}).items():
                    texts[f"{rule.get('alert')} {name}"] = value
    return texts


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """Command path (``("dsr", "status")``) -> the long options named with it anywhere."""
    commands: dict[tuple[str, ...], set[str]] = {}
    for text in documented_texts().values():
        for span in code_spans(text):
            words = span.split()
            if not words or words[0] != "callvault":
                continue
            path: list[str] = []
            for word in words[1:]:
                if not WORD.fullmatch(word):
                    break
                path.append(word)
            options = {w.split("=", 1)[0] for w in words if w.startswith("--")}
            commands.setdefault(tuple(path), set()).update(options)
    return commands


def test_the_runbooks_name_the_commands_operators_need() -> None:
    named = {" ".join(path) for path in documented_commands()}
    for needed in (
        "status",
        "reconcile",
        "deadletter list",
        "deadletter replay",
        "dsr list",
        "dsr status",
        "hold list",
        "audit verify",
        "worker",
        "migrate",
        "followups list",
        "followups retry",
        "audit checkpoint",
    ):
        assert needed in named, f"docs/runbooks.md never names `callvault {needed}`"


COMMANDS = sorted((path, sorted(options)) for path, options in documented_commands().items())


@pytest.mark.parametrize(
    ("path", "options"), COMMANDS, ids=[" ".join(("callvault", *p)) for p, _ in COMMANDS]
)
def test_documented_command_answers_help(path: tuple[str, ...], options: list[str]) -> None:
    done = subprocess.run(
        [CALLVAULT, *path, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"callvault {' '.join(path)} --help: {done.stdout}{done.stderr}"
    usage = " ".join(["callvault", *path])
    assert f"Usage: {usage}" in done.stdout, done.stdout
    missing = [o for o in options if not re.search(rf"{re.escape(o)}\b", done.stdout)]
    assert not missing, f"callvault {' '.join(path)} has no option {', '.join(missing)}"
