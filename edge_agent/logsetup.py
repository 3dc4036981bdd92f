"""Logging: plain lines on stderr when run by hand, the journal (with structured
fields) under systemd, chosen from the environment systemd gives its services."""

from __future__ import annotations

import logging
import os
import sys

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def under_systemd() -> bool:
    """systemd sets JOURNAL_STREAM for a service whose stderr goes to the journal."""
    return bool(os.environ.get("JOURNAL_STREAM")) and bool(os.environ.get("INVOCATION_ID"))


def setup_logging(level: str = "info") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level.upper())
    handler: logging.Handler | None = None
    if under_systemd():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="edge-agent")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
