"""Which port methods each contract test exercises, and the probe that checks that it does.

A contract test names the port methods it exercises with :func:`covers` (the Protocol's own
functions, so a renamed or removed method breaks the import, not the bookkeeping). While it
runs, :func:`probe` wraps those methods on every implementation of the port - the fakes of
``tests/fakes`` and the adapters of ``workers/adapters``, found by their shape, not by a list -
and the test fails if one it names was not called on the kind of implementation it ran against
(``tests/conftest.py``). ``tests/unit/test_port_contracts_complete.py`` then asks every port of
``workers/app/ports`` for its methods and fails for any that no contract test, of either kind,
exercises.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from types import ModuleType
from typing import Any, Literal, TypeVar

import tests.fakes
import workers.adapters
import workers.app.ports

Kind = Literal["fake", "real"]
PortMethod = tuple[type, str]
F = TypeVar("F", bound=Callable[..., Any])

IMPLEMENTATIONS: dict[Kind, ModuleType] = {"fake": tests.fakes, "real": workers.adapters}
# Ports no class of callvault implements: nothing of ours to hold to a contract.
NOT_OURS = {
    "Counter": "prometheus_client's counters",
    "Gauge": "prometheus_client's gauges",
    "Histogram": "prometheus_client's histograms",
    "AccessHistory": "the application's SubjectHistory, over the Registers port",
}


def covers(*methods: Callable[..., Any]) -> Callable[[F], F]:
    """Mark a contract test as exercising these port methods (``RecordingRepository.add``, ...)."""
    named = tuple(_port_method(m) for m in methods)

    def mark(test: F) -> F:
        test.__covers__ = (*getattr(test, "__covers__", ()), *named)  # type: ignore[attr-defined]
        return test

    return mark


def _port_method(function: Callable[..., Any]) -> PortMethod:
    owner_name, _, name = function.__qualname__.rpartition(".")
    owner = getattr(importlib.import_module(function.__module__), owner_name, None)
    if owner not in ports() or name not in methods(owner):
        raise TypeError(f"{function.__qualname__} is not a method of a port")
    return owner, name


def _modules(package: ModuleType) -> Iterator[ModuleType]:
    yield package
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        yield importlib.import_module(info.name)


def _classes(package: ModuleType) -> Iterator[type]:
    for module in _modules(package):
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__ == module.__name__:
                yield value


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


@cache
def ports() -> tuple[type, ...]:
    """Every Protocol of ``workers/app/ports``."""
    return tuple(c for c in _classes(workers.app.ports) if _is_protocol(c))


def methods(port: type) -> dict[str, Callable[..., Any]]:
    """The port's own public methods (properties and dunders aside; an inherited port's
    methods are that port's)."""
    return {
        name: value
        for name, value in vars(port).items()
        if not name.startswith("_") and inspect.isfunction(value)
    }


def _all_methods(port: type) -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for base in reversed(port.__mro__):
        if _is_protocol(base) and base not in (typing.Protocol, typing.Generic):
            found |= methods(base)
    return found


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(inspect.unwrap(function)).parameters)[1:]


def _has_shape(cls: type, wanted: dict[str, Callable[..., Any]]) -> bool:
    """Whether ``cls`` has every method of ``wanted``, taking the same parameters (an
    implementation may add keyword parameters of its own after them)."""
    for name, function in wanted.items():
        mine = getattr(cls, name, None)
        if not inspect.isfunction(mine):
            return False
        theirs, ours = _parameters(function), _parameters(mine)
        if ours[: len(theirs)] != theirs:
            return False
    return True


@cache
def implementations(port: type, kind: Kind) -> tuple[type, ...]:
    """The classes of this kind that implement the port, found by their shape."""
    wanted = _all_methods(port)
    if not wanted:
        return ()
    return tuple(
        c for c in _classes(IMPLEMENTATIONS[kind]) if not _is_protocol(c) and _has_shape(c, wanted)
    )


def kind_of(params: dict[str, Any]) -> Kind:
    """A contract test runs against a fake when one of its parameters says ``memory``."""
    return "fake" if "memory" in params.values() else "real"


@contextmanager
def probe(kind: Kind, wanted: tuple[PortMethod, ...]) -> Iterator[set[PortMethod]]:
    """Record which of ``wanted`` are called on implementations of ``kind`` while the block
    runs."""
    hits: set[PortMethod] = set()
    undo: list[Callable[[], None]] = []
    try:
        for port, name in set(wanted):
            for cls in implementations(port, kind):
                undo.append(_wrap(cls, name, (port, name), hits))
        yield hits
    finally:
        for restore in reversed(undo):
            restore()


def _wrap(cls: type, name: str, key: PortMethod, hits: set[PortMethod]) -> Callable[[], None]:
    own = name in vars(cls)
    original = vars(cls)[name] if own else getattr(cls, name)

    @wraps(original)
    def called(*args: Any, **kwargs: Any) -> Any:
        hits.add(key)
        return original(*args, **kwargs)

    setattr(cls, name, called)

    def restore() -> None:
        if own:
            setattr(cls, name, original)
        else:
            delattr(cls, name)

    return restore


def label(port_method: PortMethod) -> str:
    port, name = port_method
    return f"{port.__name__}.{name}"
