"""docs/contract.md, the wire contract shipped with the repository, says what schemas/ and the
code implement: every event type it names has a JSON Schema; every field in its field tables
exists in that schema and every required field is named there (in the table, or in the prose of
the section that describes the event); topic names and their variables are the settings'
defaults; the settings and metrics it lists exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from workers.adapters.metrics import Metrics
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
SCHEMAS = ROOT / "schemas"
EVENT_TYPE = re.compile(r"callvault\.[a-z]+\.[a-z]+\.v\d+|callvault\.deadletter\.v\d+")


@cache
def contract() -> str:
    return CONTRACT.read_text(encoding="utf-8")


def sections() -> dict[str, str]:
    """Level-2 heading -> its text."""
    parts = re.split(r"^## (.+)$", contract(), flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def section(start: str) -> str:
    (text,) = [body for heading, body in sections().items() if heading.startswith(start)]
    return text


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| ]+\|", line.strip()):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def ticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


@cache
def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return data


def resolve(node: dict[str, Any], base: str) -> tuple[dict[str, Any], str]:
    """Follows ``$ref`` (same file or a sibling file, JSON pointer) until a real schema."""
    while "$ref" in node:
        target, _, pointer = node["$ref"].partition("#")
        base = target or base
        node = load(base)
        for part in filter(None, pointer.split("/")):
            node = node[part]
    return node, base


def properties(schema: dict[str, Any], base: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Property name -> resolved schema, from ``properties`` and from ``allOf``/``if`` branches."""
    schema, base = resolve(schema, base)
    found = {name: resolve(sub, base) for name, sub in schema.get("properties", {}).items()}
    for branch in schema.get("allOf", []):
        for name, sub in properties(branch, base).items():
            found.setdefault(name, sub)
    return found


def has_field(event_type: str, dotted: str) -> bool:
    name = f"{event_type}.schema.json"
    node: tuple[dict[str, Any], str] = (load(name), name)
    for part in dotted.split("."):
        props = properties(*node)
        if part not in props:
            return False
        node = props[part]
    return True


def data_sections() -> Iterator[tuple[str, str]]:
    """(event type, section text) of the '## `TYPE` data' sections."""
    for heading, body in sections().items():
        match = re.fullmatch(r"`(callvault\.[a-z.]+\.v\d+)` data", heading)
        if match:
            yield match.group(1), body


# ---------------------------------------------------------------------------------- events
def test_every_event_type_named_has_a_schema_and_every_schema_is_named() -> None:
    named = set(EVENT_TYPE.findall(contract()))
    schemas = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("callvault.*.schema.json")}
    assert named == schemas


def test_every_field_in_a_table_exists_in_its_schema() -> None:
    tables = 0
    for event_type, body in data_sections():
        for row in table_rows(body):
            tables += 1
            for field in ticked(row[0]):
                assert has_field(event_type, field), f"{event_type}: no field {field} in schema"
    assert tables >= 15  # call.ended and dsr.requested have field tables


@pytest.mark.parametrize(
    "event_type",
    sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("callvault.*.schema.json")),
)
def test_every_required_field_is_documented(event_type: str) -> None:
    """Named in the event's table or prose: its '`TYPE` data' section, or the sections that
    describe it (where its type is named)."""
    texts = [body for heading, body in sections().items() if event_type in heading + body]
    documented: set[str] = set()
    for text in texts:
        for token in ticked(text):
            documented |= {part for part in re.split(r"[^a-z0-9_.]+", token) if part}
            documented |= {part.split(".")[0] for part in documented}
    required = set(load(f"{event_type}.schema.json")["required"])
    assert required <= documented, f"{event_type}: undocumented {required - documented}"


def test_dsr_types_and_outcomes_match_the_schemas() -> None:
    requested = section("`callvault.dsr.requested.v1` data")
    (type_row,) = [row for row in table_rows(requested) if row[0] == "`type`"]
    types = set(ticked(type_row[1]))
    dsr_type, _ = resolve({"$ref": "common.schema.json#/$defs/dsrType"}, "common.schema.json")
    assert types == set(dsr_type["enum"])
    completed = section("`callvault.dsr.completed.v1` data")
    outcomes = re.search(r"outcome one of (.+?)\.", completed)
    assert outcomes is not None
    schema = properties(load("callvault.dsr.completed.v1.schema.json"), "x")
    item, base = resolve(schema["recordings"][0]["items"], schema["recordings"][1])
    outcome, _ = properties(item, base)["outcome"]
    assert set(ticked(outcomes.group(1))) == set(outcome["enum"])


# ---------------------------------------------------------------------------------- topics
def test_topics_and_their_variables_are_the_settings_defaults() -> None:
    rows = table_rows(section("Topics"))
    assert len(rows) == 9
    for topic, _writer, types, _key, variable in rows:
        (name,) = ticked(topic)
        (env,) = ticked(variable)
        field = env.removeprefix("CALLVAULT_").lower()
        assert field in Settings.model_fields, env
        assert Settings.model_fields[field].default == name, env
        for event_type in ticked(types):
            assert (SCHEMAS / f"{event_type}.schema.json").is_file(), event_type


def test_settings_named_in_the_configuration_section_exist() -> None:
    text = section("Configuration")
    names = {n for n in ticked(text) if re.fullmatch(r"[A-Z][A-Z0-9_]+", n)}
    names -= {n for n in names if re.fullmatch(r"PT?(\d+[A-Z])+", n)}  # P1Y, PT30S: durations
    names.discard("TOPIC_")  # the TOPIC_<NAME> family, checked with the topics
    assert {"KAFKA_BOOTSTRAP", "DATABASE_URL", "RETENTION", "METRICS_PORT"} <= names
    for name in names:
        assert name.lower() in Settings.model_fields, f"CALLVAULT_{name} is not a setting"
    retention = section("Retention")
    assert "`CALLVAULT_RETENTION`" in retention
    assert str(Settings.model_fields["retention"].default) == "P1Y"
    assert "default `LT`" in contract()
    assert Settings.model_fields["default_region"].default == "LT"


# ---------------------------------------------------------------------------------- metrics
def test_metrics_listed_exist_with_their_labels() -> None:
    families = {f.name: f for f in Metrics().registry.collect()}
    samples = {s.name: set(s.labels) for family in families.values() for s in family.samples}
    listed = [
        token
        for token in ticked(section("Metrics"))
        if re.match(r"(callvault|kafka)_[a-z_]+", token)
    ]
    assert len(listed) >= 9
    for token in listed:
        name, _, labels = token.partition("{")
        wanted = set(filter(None, labels.rstrip("}").split(",")))
        family = families.get(name.removesuffix("_total"))
        assert family is not None or name in samples, f"{name} is not exported"
        if wanted:
            have = samples.get(name, set())
            assert wanted <= have, f"{name}: labels {wanted - have} missing"
