"""The local stack's secure profile, as tests use it: Kafka over SASL_SSL with topic ACLs
(deploy/kafka/acl-plan.sh), PostgreSQL with TLS, S3 over https - every certificate from the
stack's throw-away CA (deploy/lib/tls.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.stack import ROOT, Instance

PLAN = ROOT / "deploy" / "kafka" / "acl-plan.sh"
APPLY = ROOT / "deploy" / "kafka" / "apply_acls.py"
MECHANISMS = {
    "callvault": "SCRAM-SHA-512",
    "console": "SCRAM-SHA-512",
    "callvault-replay": "SCRAM-SHA-512",
    "telephony": "SCRAM-SHA-512",
    "compliance": "SCRAM-SHA-512",
    "dsr-portal": "PLAIN",
}


def password_file(stack: dict[str, str], principal: str) -> str:
    return str(Path(stack["CALLVAULT_STACK_SECRETS"]) / f"kafka-{principal}")


def kafka_env(stack: dict[str, str], principal: str) -> dict[str, str]:
    """``CALLVAULT_KAFKA_*`` settings that connect as ``principal`` over SASL_SSL (the password
    from its file, as a production deployment would give it)."""
    return {
        "CALLVAULT_KAFKA_BOOTSTRAP": stack["CALLVAULT_STACK_KAFKA_SECURE"],
        "CALLVAULT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CALLVAULT_KAFKA_SASL_MECHANISM": MECHANISMS[principal],
        "CALLVAULT_KAFKA_SASL_USERNAME": principal,
        "CALLVAULT_KAFKA_SASL_PASSWORD_FILE": password_file(stack, principal),
        "CALLVAULT_KAFKA_CA_FILE": stack["CALLVAULT_STACK_TLS_CA"],
    }


def kafka_options(stack: dict[str, str], principal: str) -> dict[str, Any]:
    """kafka-python options for ``principal``, made by callvault's one security function."""
    from workers.adapters.kafka.security import kafka_security
    from workers.settings import load_settings

    values = {
        k.removeprefix("CALLVAULT_").lower(): v for k, v in kafka_env(stack, principal).items()
    }
    values["kafka_sasl_password"] = Path(values.pop("kafka_sasl_password_file")).read_text().strip()
    options = kafka_security(load_settings(**values)).options()
    return {"bootstrap_servers": stack["CALLVAULT_STACK_KAFKA_SECURE"], **options}


def admin_env(stack: dict[str, str]) -> dict[str, str]:
    """``CALLVAULT_KAFKA_*`` settings of the broker's administrator (deploy/lib/kafka.sh)."""
    return {
        "CALLVAULT_KAFKA_BOOTSTRAP": stack["CALLVAULT_STACK_KAFKA_SECURE"],
        "CALLVAULT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CALLVAULT_KAFKA_SASL_MECHANISM": "PLAIN",
        "CALLVAULT_KAFKA_SASL_USERNAME": "admin",
        "CALLVAULT_KAFKA_SASL_PASSWORD_FILE": password_file(stack, "admin"),
        "CALLVAULT_KAFKA_CA_FILE": stack["CALLVAULT_STACK_TLS_CA"],
    }


def plan(instance: Instance, *, remove: bool = False, **options: str) -> None:
    """Apply (or take back) the ACL plan for the instance's topics and consumer group, as the
    broker's administrator (PLAIN over SASL_SSL: the local stack's only super user).
    ``options``: the plan's own variables (``ALLOW_DEADLETTER_REPLAY="1"``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_KAFKA_")}
    env.update(options)
    env.update({k: v for k, v in instance.env.items() if k.startswith("CALLVAULT_TOPIC_")})
    env.update(CALLVAULT_APP_ID=instance.env["CALLVAULT_APP_ID"], **admin_env(instance.env))
    printed = subprocess.run(
        ["sh", str(PLAN), *(["--remove"] if remove else [])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    subprocess.run(
        [sys.executable, str(APPLY)],
        input=printed,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


@contextmanager
def acl_plan(instance: Instance, **options: str) -> Iterator[None]:
    plan(instance, **options)
    try:
        yield
    finally:
        plan(instance, remove=True, **options)
