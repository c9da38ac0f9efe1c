"""Structured logs: JSON in production, readable locally, with correlation ids - and a last
line of defence that masks anything shaped like a phone number or an e-mail address."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w-])\+?\(?\d[\d ().-]{6,}\d(?![\w-])")
# Ids callvault or its partners generate; call_id is not among them: a PBX may build call ids
# from the caller's number, so it goes through the scrubber like any other value.
_SAFE_KEYS = {"timestamp", "event_id", "recording_id", "request_id", "hold_id"}


_NOT_A_PHONE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|\d+\.\d+")  # IPv4 addresses, decimals


def _phone_or_kept(match: re.Match[str]) -> str:
    return match.group() if _NOT_A_PHONE.fullmatch(match.group()) else "[phone]"


def mask(text: str) -> str:
    return _PHONE.sub(_phone_or_kept, _EMAIL.sub("[email]", text))


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and key not in _SAFE_KEYS:
            event[key] = mask(value)
    return event


def configure(fmt: str = "json", level: str = "INFO", libraries: str = "WARNING") -> None:
    """structlog for callvault's own events, and the same renderer (and scrubber) for the
    standard-library loggers of Faust, aiokafka and kafka-python, so every line is one format.
    ``libraries`` is their threshold: the CLI silences them, since it says in one line what
    went wrong."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _scrub, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _scrub,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(libraries.upper()))
    # psycopg gives its logger a level of its own (WARNING) unless one is set before
    logging.getLogger("psycopg").setLevel(logging.getLevelName(libraries.upper()))
