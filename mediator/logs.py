"""Structured JSON logs (structlog) with no patient data.

Log events carry ids, counts, codes and locations only. As a second line of defence, keys that
usually hold patient data are dropped before rendering, whatever a caller passed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PHI_KEYS = frozenset({"name", "names", "family", "given", "body", "message", "payload", "identifier",
                      "identifiers", "patient", "birth_date", "birthdate", "address", "phone", "cin", "ins",
                      "cnss", "ipp", "value", "text", "content"})


def drop_phi(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in PHI_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def configure(level: str = "info", fmt: str = "json") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s")
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_phi,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
