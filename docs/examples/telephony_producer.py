"""Telephony side: after a recorded call, upload its audio to callvault's landing bucket and
publish a callvault.call.ended.v1 CloudEvent to `calls.ended`, keyed by the call id.

    python telephony_producer.py --audio call.wav --call-id pbx1-20250314-000123 \\
        --caller "+370 612 34567" --callee "+370 521 44500"

It needs the Kafka brokers and write access to the landing bucket - never callvault's keys or
database. Settings (environment):
  CALLVAULT_KAFKA_BOOTSTRAP       host:port[,host:port]
  CALLVAULT_S3_ENDPOINT           http(s)://host:port of the object store
  CALLVAULT_S3_ACCESS_KEY, CALLVAULT_S3_SECRET_KEY   a credential that may write the landing bucket
  CALLVAULT_S3_REGION             default eu-central-1
  CALLVAULT_LANDING_BUCKET        the landing bucket
  CALLVAULT_TOPIC_CALLS_ENDED     default calls.ended
Libraries: kafka-python and minio (any Kafka and S3 client does the same).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kafka import KafkaProducer
from minio import Minio

CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def upload(audio: Path) -> tuple[str, int, str]:
    """Put the audio in the landing bucket under a random key (never a phone number or a name);
    returns its s3:// URI, size and SHA-256."""
    endpoint = urlsplit(os.environ["CALLVAULT_S3_ENDPOINT"])
    client = Minio(
        endpoint.netloc,
        access_key=os.environ["CALLVAULT_S3_ACCESS_KEY"],
        secret_key=os.environ["CALLVAULT_S3_SECRET_KEY"],
        region=os.environ.get("CALLVAULT_S3_REGION", "eu-central-1"),
        secure=endpoint.scheme == "https",
    )
    bucket = os.environ["CALLVAULT_LANDING_BUCKET"]
    key = f"incoming/{datetime.now(UTC):%Y/%m/%d}/{uuid.uuid4()}{audio.suffix.lower()}"
    client.fput_object(bucket, key, str(audio), content_type="application/octet-stream")
    digest = hashlib.sha256(audio.read_bytes()).hexdigest()
    return f"s3://{bucket}/{key}", audio.stat().st_size, digest


def call_ended(args: argparse.Namespace, uri: str, size: int, sha256: str) -> dict[str, Any]:
    ended = datetime.now(UTC)
    data: dict[str, Any] = {
        "call_id": args.call_id,
        "tenant": args.tenant,
        "direction": args.direction,
        "caller": args.caller,
        "callee": args.callee,
        "started_at": rfc3339(ended - timedelta(seconds=args.seconds)),
        "ended_at": rfc3339(ended),
        "notice_played": not args.no_notice,
        "recording": {"uri": uri, "size_bytes": size, "sha256": sha256},
    }
    if args.customer_email or args.order_id:
        data["customer"] = {"email": args.customer_email, "order_ids": args.order_id}
        data["customer"] = {k: v for k, v in data["customer"].items() if v}
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "//pbx.example/telephony",
        "type": "callvault.call.ended.v1",
        "time": rfc3339(ended),
        "datacontenttype": "application/json",
        "data": data,
    }


def publish(event: dict[str, Any]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=os.environ["CALLVAULT_KAFKA_BOOTSTRAP"].split(","),
        acks="all",  # the event is on every in-sync replica before we go on
    )
    try:
        producer.send(
            os.environ.get("CALLVAULT_TOPIC_CALLS_ENDED", "calls.ended"),
            key=event["data"]["call_id"].encode(),
            value=json.dumps(event).encode(),
            headers=[("content-type", CONTENT_TYPE)],
        ).get(timeout=30)
    finally:
        producer.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, required=True, help="the recording (WAV, MP3, ...)")
    parser.add_argument("--call-id", required=True, help="your telephony system's call id")
    parser.add_argument("--caller", required=True, help="any notation, or 'anonymous'")
    parser.add_argument("--callee", required=True, help="any notation, or 'anonymous'")
    parser.add_argument("--direction", choices=("inbound", "outbound"), default="inbound")
    parser.add_argument("--tenant", default="default", help="selects the retention policy")
    parser.add_argument("--seconds", type=int, default=60, help="length of the call")
    parser.add_argument("--no-notice", action="store_true", help="the notice was not played")
    parser.add_argument("--customer-email")
    parser.add_argument("--order-id", action="append", default=[])
    args = parser.parse_args(argv)
    uri, size, sha256 = upload(args.audio)
    event = call_ended(args, uri, size, sha256)
    publish(event)
    print(json.dumps({"call_id": args.call_id, "event_id": event["id"], "uri": uri}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
