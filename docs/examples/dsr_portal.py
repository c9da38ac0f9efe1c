"""DSR portal side: publish a verified data-subject request to `dsr.requests`, wait for its
answer on `dsr.results`, then download and check the export (access, portability) or verify
the deletion certificate (erasure, objection).

    python dsr_portal.py access --phone "8 612 34567" --out export.zip
    python dsr_portal.py erasure --phone "8 612 34567" --public-key BASE64 --certificate-out c.json

It needs the Kafka brokers only - never callvault's keys or database; the export is a presigned
URL that works without credentials. The public key is the one the operator prints with
`callvault public-key`. Settings (environment):
  CALLVAULT_KAFKA_BOOTSTRAP       host:port[,host:port]
  CALLVAULT_TOPIC_DSR_REQUESTS    default dsr.requests
  CALLVAULT_TOPIC_DSR_RESULTS     default dsr.results
  DSR_PORTAL_GROUP                the portal's consumer group, default dsr-portal
Prints one JSON line: request_id, status, outcomes, and what was checked.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
import urllib.request
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from verify_certificate import verify_deletion_certificate

CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_event(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "//portal.example/dsr",
        "type": "callvault.dsr.requested.v1",
        "time": rfc3339(now),
        "datacontenttype": "application/json",
        "data": {
            "request_id": args.request_id,
            "type": args.type,
            "received_at": rfc3339(now),
            "identity_verified": True,  # the portal checked who is asking
            "subject": {
                "phone_numbers": args.phone,
                "emails": args.email,
                "customer_ids": args.customer_id,
                "order_ids": args.order_id,
            },
        },
    }


def bootstrap() -> list[str]:
    return os.environ["CALLVAULT_KAFKA_BOOTSTRAP"].split(",")


def subscribe() -> KafkaConsumer:
    """Join the portal's group on dsr.results before asking, so no answer is missed."""
    consumer = KafkaConsumer(
        os.environ.get("CALLVAULT_TOPIC_DSR_RESULTS", "dsr.results"),
        bootstrap_servers=bootstrap(),
        group_id=os.environ.get("DSR_PORTAL_GROUP", "dsr-portal"),
        auto_offset_reset="earliest",
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=500)
    return consumer


def publish(event: dict[str, Any]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap(), acks="all")
    try:
        producer.send(
            os.environ.get("CALLVAULT_TOPIC_DSR_REQUESTS", "dsr.requests"),
            key=event["data"]["request_id"].encode(),
            value=json.dumps(event).encode(),
            headers=[("content-type", CONTENT_TYPE)],
        ).get(timeout=30)
    finally:
        producer.close()


def await_result(consumer: KafkaConsumer, request_id: str, timeout: float) -> dict[str, Any]:
    """The data of the callvault.dsr.completed.v1 event that answers ``request_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                event = json.loads(record.value)
                if event["data"]["request_id"] == request_id:
                    consumer.commit()
                    data: dict[str, Any] = event["data"]
                    return data
    raise TimeoutError(f"no answer to {request_id} on dsr.results within {timeout:.0f} s")


def download_export(export: dict[str, Any], out: Path) -> dict[str, Any]:
    """Fetch the presigned ZIP, check its size and SHA-256, and list what it holds."""
    with urllib.request.urlopen(export["url"], timeout=60) as response:  # noqa: S310 - http(s) URL from callvault
        body = response.read()
    if len(body) != export["size_bytes"] or hashlib.sha256(body).hexdigest() != export["sha256"]:
        raise ValueError("the export does not match its size_bytes/sha256")
    out.write_bytes(body)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        files = sorted(n for n in archive.namelist() if n != "manifest.json")
    return {"export_checked": True, "files": files, "manifest_keys": sorted(manifest)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("type", choices=("access", "portability", "erasure", "objection"))
    parser.add_argument("--phone", action="append", default=[], help="any notation")
    parser.add_argument("--email", action="append", default=[])
    parser.add_argument("--customer-id", action="append", default=[])
    parser.add_argument("--order-id", action="append", default=[])
    parser.add_argument("--request-id", default=f"portal-{uuid.uuid4()}")
    parser.add_argument("--out", type=Path, default=Path("export.zip"), help="where the ZIP goes")
    parser.add_argument("--public-key", help="base64 Ed25519 key from `callvault public-key`")
    parser.add_argument("--certificate-out", type=Path, help="save the deletion certificate")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    if args.type in ("erasure", "objection") and not args.public_key:
        parser.error("erasure/objection: --public-key is needed to verify the certificate")

    consumer = subscribe()
    try:
        publish(request_event(args))
        result = await_result(consumer, args.request_id, args.timeout)
    finally:
        consumer.close()
    summary: dict[str, Any] = {
        "request_id": args.request_id,
        "status": result["status"],
        "reason": result.get("reason"),
        "outcomes": [r["outcome"] for r in result["recordings"]],
    }
    if result.get("export"):
        summary |= download_export(result["export"], args.out)
    if result.get("certificate"):
        certificate = result["certificate"]
        summary["certificate_valid"] = verify_deletion_certificate(certificate, args.public_key)
        if args.certificate_out:
            args.certificate_out.write_text(json.dumps(certificate, indent=2), encoding="utf-8")
    print(json.dumps(summary))
    return 0 if summary.get("certificate_valid", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
