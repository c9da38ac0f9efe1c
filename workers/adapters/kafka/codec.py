"""Decoding input events: bytes -> JSON -> CloudEvent checked against ``schemas/``.

The JSON Schemas in ``schemas/`` are the single source of truth for the wire format; this
module loads them (from the installed package, or the source tree in development) and refuses
anything they refuse, with the contract's stable error codes.

Writing, every event callvault sends - the outbox's, dead letters, the connectors', the
console's, the command line's, the demo's - is built by :func:`envelope` (structured mode) and
turned into a record's value by :func:`encode`.

Both content modes of the CloudEvents Kafka protocol binding are read: structured (the whole
event is the value; ``content-type: application/cloudevents+json``, or no ``ce_*`` headers) and
binary (the attributes are ``ce_*`` headers, ``content-type`` is ``datacontenttype``, the value
is ``data``). Either way the same event is checked against the same schemas."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from ...domain.errors import InvalidJson, SchemaViolation
from ...domain.events import OutboundEvent, dataschema
from ...domain.retention import rfc3339

MAX_EVENT_BYTES = 1024 * 1024
Headers = tuple[tuple[str, bytes], ...]
_CE = "ce_"


def schema_dir() -> Path:
    package = Path(__file__).resolve().parents[2]  # workers/
    packaged = package / "_schemas"
    return packaged if packaged.is_dir() else package.parent / "schemas"


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
        """The schema with every ``$ref`` replaced by what it names (the schemas are not
        recursive): validating then never looks a reference up, which costs more than the
        checks themselves (a call-ended event: 0.24 ms against 0.09 ms)."""
        filename = f"{name}.schema.json"
        schema = json.loads((self._dir / filename).read_text())
        resolver = self._registry.resolver(base_uri=schema.get("$id", filename))
        return Draft202012Validator(_inlined(schema, resolver, ()))

    @cached_property
    def _validators(self) -> dict[str, Draft202012Validator]:
        names = [p.name.removesuffix(".schema.json") for p in self._dir.glob("*.schema.json")]
        return {name: self._validator(name) for name in names}

    def decode(
        self, raw: bytes, accepted_types: tuple[str, ...], headers: Headers = ()
    ) -> Envelope:
        if len(raw) > MAX_EVENT_BYTES:
            raise SchemaViolation(f"event larger than {MAX_EVENT_BYTES} bytes")
        value = binary_event(raw, headers) if is_binary(headers) else _json_object(raw, "event")
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


def _inlined(node: Any, resolver: Any, refs: tuple[str, ...]) -> Any:
    """``node`` with its ``$ref``s (and theirs) inlined; a ``$ref`` beside other keywords
    becomes one ``allOf`` member, as 2020-12 applies both. (``resolver``: a
    ``Registry.resolver()``, whose class ``referencing`` does not export.)"""
    if isinstance(node, list):
        return [_inlined(item, resolver, refs) for item in node]
    if not isinstance(node, dict):
        return node
    inlined = {k: _inlined(v, resolver, refs) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if ref is None:
        return inlined
    resolved = resolver.lookup(ref)
    if ref in refs:
        raise ValueError(f"recursive $ref {ref!r}: the codec inlines references")
    target = _inlined(resolved.contents, resolved.resolver, (*refs, ref))
    return {"allOf": [target], **inlined} if inlined else target


def envelope(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    id: str | None = None,
    subject: str | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The CloudEvents 1.0 envelope of an event callvault writes (structured mode): ``id``
    by default a new one (a new event each time it is built), ``time`` by default now;
    ``dataschema`` names the JSON Schema of ``data``, so that a consumer can validate it."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
    }
    if subject is not None:
        event["subject"] = subject
    return event | {
        "time": rfc3339(time or datetime.now(UTC)),
        "datacontenttype": "application/json",
        "dataschema": dataschema(event_type),
        "data": data,
    }


def outbound(event: OutboundEvent, source: str) -> dict[str, Any]:
    """The envelope of one of callvault's own output events: its stable id, its subject."""
    return envelope(
        event.type,
        event.data,
        source=source,
        id=event.id,
        subject=event.subject or event.about,
        time=event.at,
    )


def encode(cloudevent: dict[str, Any]) -> bytes:
    """A Kafka record's value: the envelope as compact UTF-8 JSON."""
    return json.dumps(cloudevent, separators=(",", ":"), ensure_ascii=False).encode()


def record(event: OutboundEvent, source: str) -> bytes:
    """The value of the record that carries one of callvault's own output events."""
    return encode(outbound(event, source))


def is_binary(headers: Headers) -> bool:
    """Binary content mode: a ``ce_specversion`` header and a ``content-type`` that is not
    the structured mode's ``application/cloudevents...``."""
    names = {name.lower(): value for name, value in headers}
    content_type = names.get("content-type", b"").decode("latin-1").strip().lower()
    return "ce_specversion" in names and not content_type.startswith("application/cloudevents")


def binary_event(raw: bytes, headers: Headers) -> dict[str, Any]:
    """The structured form of a binary-mode record: ``ce_*`` headers as attributes,
    ``content-type`` as ``datacontenttype`` (JSON when absent), the value as ``data``."""
    event: dict[str, Any] = {}
    content_type = "application/json"
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith(_CE) or lowered == "content-type":
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise SchemaViolation(f"header {lowered}: not UTF-8") from None
            if lowered == "content-type":
                content_type = text
            else:
                event[lowered.removeprefix(_CE)] = text
    media_type = content_type.split(";", 1)[0].strip().lower()
    event["datacontenttype"] = (
        "application/json" if media_type == "application/json" else media_type
    )
    event["data"] = _json_object(raw, "data")
    return event


def binary_data(raw: bytes) -> Any:
    """The value of a binary-mode record (its data), or ``None`` when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJson(f"not UTF-8 JSON: {type(exc).__name__} at {_where(exc)}") from None
    except RecursionError:
        raise InvalidJson("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise SchemaViolation(f"the {what} is not a JSON object")
    return value


def _depth(error: Any) -> int:
    return len(error.absolute_path)


def _where(exc: Exception) -> str:
    return f"position {getattr(exc, 'pos', getattr(exc, 'start', '?'))}"
