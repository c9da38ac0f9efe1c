"""The import rules of docs/architecture.md, read from the source: the domain imports nothing of
callvault's but itself; the application never imports an adapter, the composition root or an
entry point; no production module imports the tests; and only ``workers/bootstrap.py``
constructs an adapter - nowhere else in ``workers/``, ``bench/`` or ``testbed/`` (an adapter
may build its own parts, and the tests build adapters to hold them to their contracts)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ROOT / "workers"
# Files allowed to construct an adapter themselves, and why.
OWN_ADAPTERS = {
    "bench/lookup.py": "times the exact SQL a repository sends, on a connection that records it",
    "bench/scheduler.py": "times the exact SQL a repository sends, on a connection that records it",
}


def python_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imported_names(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, module, name) of every import in the file (``name`` empty for ``import x``),
    relative imports resolved, those inside functions included."""
    package = module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node.lineno, module, alias.name


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of what the file imports: ``pkg.module`` or ``pkg.module.name``."""
    for line, module, name in imported_names(path):
        yield line, f"{module}.{name}" if name else module


def _under(dotted: str, package: str) -> bool:
    return dotted == package or dotted.startswith(package + ".")


def violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {dotted}"
        for path in paths
        for line, dotted in imports(path)
        if any(_under(dotted, f) for f in forbidden)
    ]


def test_the_domain_imports_nothing_of_callvaults_but_itself() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {dotted}"
        for path in python_files(WORKERS / "domain")
        for line, dotted in imports(path)
        if _under(dotted, "workers") and not _under(dotted, "workers.domain")
    ]
    assert found == []


def test_the_application_imports_no_adapter_entry_point_or_composition_root() -> None:
    forbidden = ("workers.adapters", "workers.entrypoints", "workers.bootstrap", "workers.demo")
    assert violations(python_files(WORKERS / "app"), forbidden) == []


def test_no_production_module_or_benchmark_imports_the_tests() -> None:
    paths = python_files(WORKERS, ROOT / "bench", ROOT / "testbed")
    assert violations(paths, ("tests",)) == []


def _adapter_class(dotted: str) -> type | None:
    """The class of ``workers.adapters`` that ``dotted`` names, if it names one."""
    module, _, name = dotted.rpartition(".")
    while module:
        try:
            found: Any = importlib.import_module(module)
            break
        except ImportError:
            module, _, outer = module.rpartition(".")
            name = f"{outer}.{name}"
    else:
        return None
    for part in name.split("."):
        found = getattr(found, part, None)
    if not inspect.isclass(found) or not found.__module__.startswith("workers.adapters"):
        return None
    return found


def _a_value(cls: type) -> bool:
    """Settings, request bodies, records and errors are values anyone may make, not adapters."""
    return (
        issubclass(cls, pydantic.BaseModel | BaseException)
        or dataclasses.is_dataclass(cls)
        or inspect.isabstract(cls)
    )


def constructions(path: Path) -> Iterator[tuple[int, str]]:
    """(line, class) of every call in the file that constructs an adapter."""
    names: dict[str, str] = {}
    for _, module, name in imported_names(path):
        if name:
            names[name] = f"{module}.{name}"
        else:
            names[module.split(".")[0]] = module.split(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = names.pop(alias.name, alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        chain, target = [], node.func
        while isinstance(target, ast.Attribute):
            chain.append(target.attr)
            target = target.value
        if isinstance(target, ast.Name) and target.id in names:
            dotted = ".".join([names[target.id], *reversed(chain)])
            cls = _adapter_class(dotted) if _under(dotted, "workers.adapters") else None
            if cls is not None and not _a_value(cls):
                yield node.lineno, f"{cls.__module__}.{cls.__qualname__}"


def outside_the_adapters() -> list[Path]:
    return [
        p
        for p in python_files(WORKERS, ROOT / "bench", ROOT / "testbed")
        if not _under(module_of(p), "workers.adapters") and p != WORKERS / "bootstrap.py"
    ]


@pytest.mark.parametrize("path", outside_the_adapters(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_composition_root_constructs_adapters(path: Path) -> None:
    if str(path.relative_to(ROOT)) in OWN_ADAPTERS:
        pytest.skip(OWN_ADAPTERS[str(path.relative_to(ROOT))])
    assert [f"line {line}: {cls}" for line, cls in constructions(path)] == []


def test_one_cloudevents_envelope_builder() -> None:
    """Every event callvault, its bench and its tests write is built by the Kafka codec's
    ``envelope``: no other dictionary names ``specversion``."""
    builder = WORKERS / "adapters" / "kafka" / "codec.py"
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in python_files(WORKERS, ROOT / "bench", ROOT / "testbed", ROOT / "tests")
        if path != builder
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Dict)
        and any(isinstance(k, ast.Constant) and k.value == "specversion" for k in node.keys)
    ]
    assert found == []
