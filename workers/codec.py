"""Decoding input events: bytes -> JSON -> CloudEvent checked against ``schemas/``.

The JSON Schemas in ``schemas/`` are the single source of truth for the wire format; this
module loads them (from the installed package, or the source tree in development) and refuses
anything they refuse, with the contract's stable error codes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from .domain.errors import InvalidJson, SchemaViolation

MAX_EVENT_BYTES = 1024 * 1024


def schema_dir() -> Path:
    here = Path(__file__).resolve().parent
    packaged = here / "_schemas"
    return packaged if packaged.is_dir() else here.parent / "schemas"


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    data: dict[str, Any]


class Codec:
    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory or schema_dir()

    @cached_property
    def _registry(self) -> Registry[Any]:
        resources = []
        for path in sorted(self._dir.glob("*.schema.json")):
            contents = json.loads(path.read_text())
            resource = Resource.from_contents(contents)
            resources.append((contents.get("$id", path.name), resource))
            resources.append((path.name, resource))
        return Registry().with_resources(resources)

    def _validator(self, name: str) -> Draft202012Validator:
        schema = json.loads((self._dir / f"{name}.schema.json").read_text())
        return Draft202012Validator(schema, registry=self._registry)

    @cached_property
    def _validators(self) -> dict[str, Draft202012Validator]:
        names = [p.name.removesuffix(".schema.json") for p in self._dir.glob("*.schema.json")]
        return {name: self._validator(name) for name in names}

    def decode(self, raw: bytes, accepted_types: tuple[str, ...]) -> Envelope:
        if len(raw) > MAX_EVENT_BYTES:
            raise SchemaViolation(f"event larger than {MAX_EVENT_BYTES} bytes")
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidJson(f"not UTF-8 JSON: {type(exc).__name__} at {_where(exc)}") from None
        except RecursionError:
            raise InvalidJson("JSON nested too deeply") from None
        if not isinstance(value, dict):
            raise SchemaViolation("the event is not a JSON object")
        self.check("cloudevent", value)
        if value["type"] not in accepted_types:
            raise SchemaViolation(
                f"event type {value['type']!r} is not accepted on this topic "
                f"(expected {', '.join(accepted_types)})"
            )
        self.check(value["type"], value["data"])
        return Envelope(value["id"], value["type"], value["source"], value["data"])

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`SchemaViolation` naming the first problem (path and rule, no values)."""
        error = next(iter(sorted(self._validators[name].iter_errors(value), key=_depth)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            # Messages of these rules name properties only; others would quote the value,
            # which may be personal data.
            names_only = error.validator in ("required", "additionalProperties")
            detail = error.message if names_only else f"fails '{error.validator}'"
            raise SchemaViolation(f"{name}: {where}: {detail}")

    def names(self) -> list[str]:
        return sorted(self._validators)


def _depth(error: Any) -> int:
    return len(error.absolute_path)


def _where(exc: Exception) -> str:
    return f"position {getattr(exc, 'pos', getattr(exc, 'start', '?'))}"
