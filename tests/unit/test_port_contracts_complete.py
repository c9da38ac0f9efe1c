"""Every method of every port is in the contract suite, against each kind of implementation it
has: the fakes of ``tests/fakes`` and the adapters of ``workers/adapters``.

The ports are read from ``workers/app/ports`` and their implementations found by their shape
(``tests.contracts``), so a new port, a new method or a new fake is owed a contract test the
moment it exists. The tests that pay are found by collecting the suite (in a process of its
own) and reading what each names with ``covers``; while they run, the probe in
``tests/conftest.py`` fails any that names a method it does not call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.contracts import NOT_OURS, Kind, implementations, label, methods, ports

ROOT = Path(__file__).resolve().parents[2]
COLLECT = """
import json, sys
import pytest
from tests.contracts import kind_of, label

found = []

class Collect:
    def pytest_collection_modifyitems(self, items):
        for item in items:
            named = getattr(getattr(item, "function", None), "__covers__", ())
            if named:
                callspec = getattr(item, "callspec", None)
                kind = kind_of(callspec.params if callspec is not None else {})
                found.append([item.nodeid, kind, [label(m) for m in named]])

options = ["--collect-only", "-q", "-p", "no:cacheprovider"]
code = pytest.main([*options, *sys.argv[1:]], plugins=[Collect()])
print("COVERED " + json.dumps(found))
sys.exit(int(code))
"""


def contract_files() -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if "@covers(" in path.read_text()
    )


def covered() -> dict[Kind, set[str]]:
    """Port methods (``Port.method``) some collected contract test names, per kind."""
    run = subprocess.run(
        [sys.executable, "-c", COLLECT, *contract_files()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("COVERED ")), None)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert line is not None, run.stdout[-3000:]
    found: dict[Kind, set[str]] = {"fake": set(), "real": set()}
    for _, kind, named in json.loads(line.removeprefix("COVERED ")):
        found[kind].update(named)
    return found


def owed() -> dict[Kind, set[str]]:
    """Every port method, per kind of implementation it has."""
    due: dict[Kind, set[str]] = {"fake": set(), "real": set()}
    for port in ports():
        if port.__name__ in NOT_OURS:
            continue
        for kind in due:
            if implementations(port, kind):
                due[kind].update(label((port, name)) for name in methods(port))
    return due


def test_every_port_method_is_in_the_contract_suite() -> None:
    due, paid = owed(), covered()
    missing = {kind: sorted(due[kind] - paid[kind]) for kind in due}
    assert missing == {"fake": [], "real": []}


def test_every_port_has_a_real_implementation_or_a_reason() -> None:
    """A port no adapter implements is owed nothing above: it must be one callvault does
    not implement itself (the metrics library's), or a mistake."""
    without = {p.__name__ for p in ports() if methods(p) and not implementations(p, "real")}
    assert without == set(NOT_OURS)
