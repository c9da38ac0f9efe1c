"""The package is complete and its locks agree: the Apache-2.0 text it declares ships as LICENSE,
the metadata a package index shows is filled in, the build backend is pinned, and the runtime
lock (what the container image installs) holds the runtime dependencies only, at the same
versions as the dev lock (what .venv installs)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements.lock", "requirements-dev.lock", "requirements-build.lock")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text(encoding="utf-8")
    return {name(n): v for n, v in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.MULTILINE)}


def test_license_is_the_full_apache_2_text(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text.splitlines()[1]
    for part in (
        "Version 2.0, January 2004",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ):
        assert part in text, part
    assert len(text) > 11_000


def test_metadata_is_complete(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    assert (ROOT / project["readme"]).is_file()
    assert project["authors"]
    assert len(project["keywords"]) >= 5
    assert "gdpr" in project["keywords"]
    classifiers = project["classifiers"]
    assert f"Programming Language :: Python :: {project['requires-python'][2:]}" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert project["scripts"]["callvault"]


def test_build_backend_is_pinned_and_locked(pyproject: dict[str, Any]) -> None:
    requires = pyproject["build-system"]["requires"]
    build = pins("requirements-build.lock")
    for requirement in requires:
        package, _, version = requirement.partition("==")
        assert version, f"build requirement {requirement!r} is not pinned with =="
        assert build[name(package)] == version


def test_every_lock_entry_has_hashes() -> None:
    for lock in LOCKS:
        text = (ROOT / lock).read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
        for entry in entries:
            if re.match(r"[A-Za-z0-9._-]+==", entry):
                assert "--hash=sha256:" in entry, f"{lock}: {entry.splitlines()[0]}"
        assert "--index-url" not in text
        assert "--extra-index-url" not in text


def test_runtime_lock_has_runtime_dependencies_only(pyproject: dict[str, Any]) -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    for requirement in pyproject["project"]["dependencies"]:
        assert name(requirement) in runtime, requirement
    for requirement in pyproject["project"]["optional-dependencies"]["dev"]:
        assert name(requirement) not in runtime, f"dev tool {requirement} in the runtime lock"
        assert name(requirement) in dev, requirement
    drift = {p: (v, dev.get(p)) for p, v in runtime.items() if dev.get(p) != v}
    assert not drift, f"runtime and dev locks disagree: {drift}"


def third_party_imports() -> set[str]:
    """Top-level names of the third-party modules that workers/ imports."""
    import ast
    import sys

    imported: set[str] = set()
    for path in (ROOT / "workers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names) - {"workers", "__future__"}


# Declared although callvault never imports them: another dependency uses them when present.
USED_BY_OTHERS = {
    "crc32c": "kafka-python checksums record batches with it in C",
    "python-multipart": "FastAPI parses the console's and webhooks' form posts with it",
    "jinja2": "FastAPI's Jinja2Templates renders the console's pages with it",
}
# Declared ahead of the code that will import it (remove the entry when it does).
DECLARED_AHEAD: dict[str, str] = {}


def test_every_declared_dependency_is_imported(pyproject: dict[str, Any]) -> None:
    """A dependency is declared because workers/ imports it (another's dependency is locked
    through that one): nothing declared for nothing."""
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    imported = {name(d) for m in third_party_imports() for d in distributions.get(m, [])}
    for requirement in pyproject["project"]["dependencies"]:
        package = name(requirement)
        assert package in imported or package in USED_BY_OTHERS | DECLARED_AHEAD.keys(), (
            f"{requirement} is declared but nothing in workers/ imports it"
        )
    stale = imported & DECLARED_AHEAD.keys()
    assert not stale, f"{stale} imported now: remove from DECLARED_AHEAD"


def test_runtime_lock_covers_every_import_of_the_package() -> None:
    """What the image installs (requirements.lock) is enough for every module of workers/."""
    from importlib.metadata import packages_distributions

    third_party = third_party_imports()
    distributions = packages_distributions()
    runtime = pins("requirements.lock")
    for module in sorted(third_party):
        names = {name(d) for d in distributions.get(module, [])}
        assert names, f"{module} is imported but installed by no distribution"
        assert names & set(runtime), f"{module} ({names}) is not in requirements.lock"


def test_the_wheel_builds_with_the_locked_backend_alone(tmp_path: Path) -> None:
    """As the image's build stage does it: no build isolation, only requirements-build.lock."""
    import subprocess
    import sys
    import zipfile

    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index"]
    done = subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("callvault-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "workers/cli.py" in names or any(n.startswith("workers/entrypoints/") for n in names)
    assert any(n.startswith("workers/_schemas/") and n.endswith(".schema.json") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for language in ("lt", "en"):  # the message catalogues, compiled by the build
        assert f"workers/i18n/locale/{language}/LC_MESSAGES/messages.mo" in names
        assert f"workers/i18n/locale/{language}/LC_MESSAGES/messages.po" in names
