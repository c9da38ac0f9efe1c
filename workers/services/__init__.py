"""Handlers: one use case each, written against the ports, no Kafka or SQL in sight."""
