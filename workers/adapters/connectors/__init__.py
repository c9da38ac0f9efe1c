"""Telephony connectors: each watches one kind of telephony system for finished recordings and
hands them to the one :mod:`publisher`, which lands the audio and publishes
``callvault.call.ended.v1``. A connector needs Kafka and the landing bucket, nothing else of
callvault's (no database, no keys)."""
