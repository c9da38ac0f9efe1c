"""Topic administration for ``callvault migrate``: the missing topics created with their
configs."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.errors import AuthorizationError, KafkaError, TopicAlreadyExistsError

from ...domain.errors import AccessRefused, TransientError
from .security import PLAINTEXT, KafkaSecurity


def ensure_topics(
    bootstrap: str,
    topics: dict[str, dict[str, str]],
    partitions: int,
    replication: int,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the missing topics with their configs; returns the names created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id="callvault-migrate",
            **security.options(),
        )
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {
                "num_partitions": partitions,
                "replication_factor": replication,
                "configs": configs,
            }
            for name, configs in topics.items()
            if name not in existing
        }
        if missing:
            # Another migrate may create them at the same moment: that is success too.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, wait_for_metadata=True)
        return sorted(missing)
    except AuthorizationError as exc:
        raise AccessRefused(
            f"Kafka refused this principal creating topics ({type(exc).__name__}): create them "
            "as an administrator, or see the ACL plan, deploy/kafka/acl-plan.sh"
        ) from exc
    except KafkaError as exc:
        raise TransientError(f"Kafka did not answer: {type(exc).__name__}") from exc
    finally:
        admin.close()
