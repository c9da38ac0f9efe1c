"""Run by the one-shot 's3-policies' service (callvault's image, with migrate's credentials)
once `migrate` has made the buckets: bucket policies that give each S3 user what it uses and
no more - the workers everything on callvault's three buckets (erasures before the retention
date bypass governance retention), the console reading the vault and writing the export
bucket, the telephony connectors only putting into the landing bucket. Idempotent.

The same policy on AWS S3: deploy/README.md ("S3 users")."""

from __future__ import annotations

import json
import os

from workers.bootstrap import object_store
from workers.settings import load_settings

WORKER, CONSOLE, TELEPHONY = "callvault-worker", "callvault-console", "telephony"
CONSOLE_READS = ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]
CONSOLE_EXPORTS = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"]


def statement(user: str, actions: list[str], bucket: str) -> dict[str, object]:
    return {
        "Effect": "Allow",
        "Principal": user,
        "Action": actions,
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }


def policies(vault: str, exports: str, landing: str) -> dict[str, list[dict[str, object]]]:
    return {
        vault: [statement(WORKER, ["s3:*"], vault), statement(CONSOLE, CONSOLE_READS, vault)],
        exports: [
            statement(WORKER, ["s3:*"], exports),
            statement(CONSOLE, CONSOLE_EXPORTS, exports),
        ],
        landing: [
            statement(WORKER, ["s3:*"], landing),
            statement(TELEPHONY, ["s3:PutObject"], landing),
        ],
    }


def main() -> None:
    settings = load_settings()
    client = object_store(settings).client
    wanted = policies(settings.vault_bucket, settings.export_bucket, settings.landing_bucket)
    for bucket, statements in wanted.items():
        client.set_bucket_policy(
            bucket, json.dumps({"Version": "2012-10-17", "Statement": statements})
        )
    print(f"s3-policies: {', '.join(wanted)} ({os.environ.get('CALLVAULT_S3_ENDPOINT')})")


if __name__ == "__main__":
    main()
