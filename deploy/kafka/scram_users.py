"""Create or update SCRAM-SHA-512 users on a Kafka cluster (idempotent), each password read
from a file - never from the command line.

Usage: python deploy/kafka/scram_users.py BOOTSTRAP USER=PASSWORD_FILE...

The local stack runs it as the broker's administrator (PLAIN over its SASL_SSL listener), the
compose project's kafka-init likewise; elsewhere give an administrator's connection in the
CALLVAULT_KAFKA_* variables (see README, "Deployment"). Needs the project's virtual
environment (kafka-python).
"""

from __future__ import annotations

import sys
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

from workers.adapters.kafka.security import kafka_security
from workers.settings import load_settings


def main(bootstrap: str, users: list[str]) -> int:
    security = kafka_security(load_settings())
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","), client_id="callvault-stack", **security.options()
    )
    try:
        upserts = []
        for item in users:
            user, _, path = item.partition("=")
            password = Path(path).read_text(encoding="utf-8").strip()
            upserts.append(
                UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, password)
            )
        failed = {u: e for u, e in admin.alter_user_scram_credentials(upserts).items() if e}
    finally:
        admin.close()
    for user, error in failed.items():
        print(f"scram_users: {user}: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
