"""Rolling upgrades never break running workers: every schema migration is listed under the
release that ships it in CHANGELOG.md (with that release's upgrade note), and once a release is
out, a later migration only expands the schema - it never drops, renames or narrows what the
released code still uses - unless it says which release stopped using it (``-- contract:``),
the contract half of expand/contract (deploy/README.md#upgrades-expand-and-contract)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHANGELOG = ROOT / "CHANGELOG.md"
MIGRATIONS = ROOT / "workers" / "adapters" / "postgres" / "migrations"
RELEASE = re.compile(r"^## (\d+\.\d+\.\d+)(?: - (unreleased|\d{4}-\d\d-\d\d))?\s*$", re.M)
LISTED = re.compile(r"\*\*Migrations\*\*:(.*?)(?:\n\n|\Z)", re.S)
CONTRACTING = re.compile(
    r"\bDROP\s+(TABLE|COLUMN|VIEW|FUNCTION|TRIGGER|TYPE)\b"
    r"|\bRENAME\b"
    r"|\bALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\b"
    r"|\bSET\s+NOT\s+NULL\b"
    r"|\bADD\s+COLUMN\s+[^;,]*\bNOT\s+NULL\b(?![^;,]*\bDEFAULT\b)",
    re.I,
)
CONTRACT_NOTE = re.compile(r"^--\s*contract:.*\bunused since (\d+\.\d+\.\d+)\b", re.I | re.M)


def releases() -> list[tuple[str, bool, set[str]]]:
    """(version, released?, migrations) for each release of CHANGELOG.md, newest first."""
    text = CHANGELOG.read_text(encoding="utf-8")
    marks = list(RELEASE.finditer(text))
    found = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end() : following.start() if following else len(text)]
        listed = LISTED.search(body)
        names = set(re.findall(r"`([0-9]{4}_[a-z0-9_]+)`", listed.group(1))) if listed else set()
        found.append((mark.group(1), mark.group(2) != "unreleased", names))
    return found


def migrations() -> dict[str, str]:
    return {
        path.stem: path.read_text(encoding="utf-8")
        for path in sorted(MIGRATIONS.glob("*.sql"))
        if not path.stem.endswith(".rollback")
    }


def contracting_statements(sql: str) -> list[str]:
    """The statements that would break code written for the schema before them, unless a
    ``-- contract: … unused since X.Y.Z`` line stands right above."""
    problems = []
    statements = re.split(r";\s*\n", re.sub(r"/\*.*?\*/", "", sql, flags=re.S))
    for statement in statements:
        code = "\n".join(
            line for line in statement.splitlines() if not line.strip().startswith("--")
        )
        if CONTRACTING.search(code) and not CONTRACT_NOTE.search(statement):
            problems.append(" ".join(code.split()))
    return problems


def test_every_migration_is_listed_under_exactly_one_release() -> None:
    listed = [name for _, _, names in releases() for name in names]
    on_disk = set(migrations())
    assert sorted(set(listed) - on_disk) == [], "CHANGELOG.md lists migrations that do not exist"
    missing = sorted(on_disk - set(listed))
    assert not missing, (
        f"CHANGELOG.md does not list {', '.join(missing)}: add them to the **Migrations** of the "
        "unreleased release, and say in its **Upgrade** note what the operator must know"
    )
    assert len(listed) == len(set(listed)), "a migration is listed under two releases"


def test_after_a_release_migrations_only_expand_the_schema() -> None:
    history = releases()
    released = [(version, names) for version, done, names in history if done]
    if not released:
        pytest.skip("no release yet: nothing runs the schema of an earlier release")
    shipped = set().union(*(names for _, names in released))
    known = {version for version, _ in released}
    for name, sql in migrations().items():
        if name in shipped:
            continue
        assert not contracting_statements(sql), (
            f"{name} removes or narrows what the running release may still use "
            f"({contracting_statements(sql)}): expand now, contract in a later release with "
            "`-- contract: <what> unused since <released version>` above the statement"
        )
        for version in CONTRACT_NOTE.findall(sql):
            assert version in known, f"{name}: {version} is not a released version"


@pytest.mark.parametrize(
    ("sql", "contracting"),
    [
        ("ALTER TABLE recordings ADD COLUMN note text;", False),
        ("CREATE TABLE t (id int NOT NULL);", False),
        ("ALTER TABLE t ADD COLUMN n int NOT NULL DEFAULT 0;", False),
        ("CREATE INDEX CONCURRENTLY t_idx ON t (a);", False),
        ("DROP TABLE console_login_failures;", True),
        ("ALTER TABLE t DROP COLUMN old;", True),
        ("ALTER TABLE t RENAME COLUMN a TO b;", True),
        ("ALTER TABLE t ALTER COLUMN a TYPE bigint;", True),
        ("ALTER TABLE t ALTER COLUMN a SET NOT NULL;", True),
        ("ALTER TABLE t ADD COLUMN n int NOT NULL;", True),
        ("-- contract: t.old unused since 0.1.0\nALTER TABLE t DROP COLUMN old;", False),
        ("-- the old column goes\nALTER TABLE t DROP COLUMN old;", True),
    ],
)
def test_contracting_statements_are_recognised(sql: str, contracting: bool) -> None:
    assert bool(contracting_statements(sql)) is contracting


def test_the_first_release_lists_the_schema_it_ships() -> None:
    *_, (version, _, names) = releases()
    assert version == "0.1.0"
    assert "0001_initial" in names
