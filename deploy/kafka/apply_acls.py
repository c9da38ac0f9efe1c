"""Apply `kafka-acls.sh --add|--remove` commands (as deploy/kafka/acl-plan.sh prints them)
through kafka-python, in one connection, as the CALLVAULT_KAFKA_* settings connect.

Usage: deploy/kafka/acl-plan.sh | .venv/bin/python deploy/kafka/apply_acls.py [BOOTSTRAP]

Only the options the plan uses are understood: --allow-principal, --operation (repeated),
--topic, --group, --cluster, --resource-pattern-type (literal or prefixed). The connection
options of the printed commands are ignored: BOOTSTRAP (default CALLVAULT_KAFKA_BOOTSTRAP) and the
CALLVAULT_KAFKA_* security settings say how to connect.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from workers.adapters.kafka.security import kafka_security
from workers.settings import load_settings


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="kafka-acls.sh", add_help=False)
    found.add_argument("--bootstrap-server")
    found.add_argument("--command-config")
    found.add_argument("--add", action="store_true")
    found.add_argument("--remove", action="store_true")
    found.add_argument("--force", action="store_true")
    found.add_argument("--allow-principal", required=True)
    found.add_argument("--operation", action="append", required=True)
    found.add_argument("--topic")
    found.add_argument("--group")
    found.add_argument("--cluster", action="store_true")
    found.add_argument("--resource-pattern-type", default="literal")
    return found


def entries(line: str) -> tuple[bool, list[ACL]]:
    """Whether the line adds (or removes), and its ACLs."""
    args = parser().parse_args(shlex.split(line)[1:])
    if args.cluster:
        kind, name = ResourceType.CLUSTER, "kafka-cluster"
    elif args.topic is not None:
        kind, name = ResourceType.TOPIC, args.topic
    else:
        kind, name = ResourceType.GROUP, args.group
    pattern_type = ACLResourcePatternType[args.resource_pattern_type.upper()]
    pattern = ResourcePattern(kind, name, pattern_type)
    return args.add, [
        ACL(args.allow_principal, "*", operation(op), ACLPermissionType.ALLOW, pattern)
        for op in args.operation
    ]


def operation(name: str) -> ACLOperation:
    """kafka-acls.sh's operation names (Read, DescribeConfigs, IdempotentWrite, ...)."""
    return ACLOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()]


def main(bootstrap: str | None) -> int:
    settings = load_settings()
    admin = KafkaAdminClient(
        bootstrap_servers=(bootstrap or settings.kafka).split(","),
        client_id="callvault-acl-plan",
        **kafka_security(settings).options(),
    )
    added, removed = [], []
    try:
        for line in sys.stdin:
            if line.strip():
                adds, acls = entries(line)
                (added if adds else removed).extend(acls)
        failed = admin.create_acls(added)["failed"] if added else []
        if removed:
            admin.delete_acls([_filter(acl) for acl in removed])
    finally:
        admin.close()
    for failure in failed:
        print(f"apply_acls: {failure}", file=sys.stderr)
    print(f"apply_acls: {len(added)} added, {len(removed)} removed", file=sys.stderr)
    return 1 if failed else 0


def _filter(acl: ACL) -> ACLFilter:
    pattern = acl.resource_pattern
    return ACLFilter(
        acl.principal,
        acl.host,
        acl.operation,
        acl.permission_type,
        ResourcePatternFilter(pattern.resource_type, pattern.resource_name, pattern.pattern_type),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
