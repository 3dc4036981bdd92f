"""Logging: plain lines on stderr when run by hand, the journal (with structured
fields) under systemd, chosen from the environment systemd gives its services.

``log_context(TURN_ID=12, STAGE="stt")`` attaches fields to every record logged
inside it, so ``journalctl -u edge-agent TURN_ID=12`` shows one turn. The fields
live in a context variable: asyncio tasks inherit them, and so do threads started
with ``asyncio.to_thread`` (but not ``loop.run_in_executor`` or bare threads).
"""

from __future__ import annotations

import contextlib
import contextvars
import faulthandler
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.events import Event, EventBus

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s"
# The journal stamps time, host and pid itself; a priority travels as a field.
JOURNAL_FORMAT = "%(name)s: %(message)s%(context)s"
# Without systemd-python, stderr still reaches the journal; "<N>" sets the priority.
PREFIXED_FORMAT = "<%(syslog_priority)d>%(name)s: %(message)s%(context)s"
SYSLOG_IDENTIFIER = "edge-agent"

# Libraries that log at INFO what the daemon already says (every HTTP request; the
# echo canceller's set-up): only their warnings show.
CHATTY_LOGGERS = ("httpx2", "httpcore2", "speexdsp_aec")

# journald's rule: upper-case letters, digits and "_", not starting with a digit
# or "_" (those are trusted fields journald sets itself), at most 64 characters.
_FIELD_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "edge_agent_log_context", default={})  # noqa: B039 (never mutated, only replaced)
# Fields of the whole process (the agent's STATE), under any log_context's fields.
_process_fields: dict[str, str] = {}

JournalSender = Callable[..., Any]


def under_systemd() -> bool:
    """True when our stderr is the journal stream systemd set up for this service.

    systemd sets JOURNAL_STREAM to the device:inode of that stream; comparing it
    with stderr keeps a child whose stderr was redirected from logging to the
    journal by mistake (the check sd_journal_stream_fd's documentation asks for).
    """
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream or not os.environ.get("INVOCATION_ID"):
        return False
    try:
        device, inode = (int(part) for part in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add journal fields (TURN_ID, STAGE, STATE...) to records logged inside.

    Names are upper-cased; a value of None removes a field set by an outer context.
    """
    merged = dict(_context.get())
    for name, value in fields.items():
        key = name.upper()
        if not _FIELD_NAME.match(key):
            raise ValueError(f"{name!r} is not a journal field name (A-Z, 0-9, _)")
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The fields ``log_context`` has set here (a copy)."""
    return dict(_context.get())


def follow_state(bus: EventBus) -> Callable[[], None]:
    """Stamp every record with the agent's current STATE (from "state" events), so
    ``journalctl -u edge-agent STATE=thinking`` works; returns the unsubscribe."""

    def on_event(event: Event) -> None:
        if event.name == "state":
            _process_fields["STATE"] = str(event.fields["state"])

    unsubscribe = bus.subscribe(on_event)

    def stop() -> None:
        unsubscribe()
        _process_fields.pop("STATE", None)

    return stop


class ContextFilter(logging.Filter):
    """Puts the context's fields on each record: as attributes, which
    JournalHandler sends as journal fields, and as " [TURN_ID=12 STAGE=stt]" text
    for the plain formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = {**_process_fields, **_context.get()}
        for key, value in fields.items():
            setattr(record, key, value)
        record.context = (
            " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" if fields else "")
        record.syslog_priority = _syslog_priority(record.levelno)
        return True


def _syslog_priority(levelno: int) -> int:
    """Python level -> syslog priority (3 err, 4 warning, 6 info, 7 debug)."""
    for limit, priority in ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4),
                            (logging.ERROR, 3)):
        if levelno <= limit:
            return priority
    return 2


def setup_logging(
    level: str = "info",
    *,
    journal: bool | None = None,
    journal_sender: JournalSender | None = None,
) -> logging.Handler:
    """Send every record to the journal (under systemd) or stderr; return the handler.

    ``journal`` forces the choice (None: decide with ``under_systemd()``).
    ``journal_sender`` replaces ``systemd.journal.send``, for tests without journald.
    Calling it again replaces the handler; a reload that changes log.level only
    needs ``set_level``.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)  # not closed: a test runner's handler may be reattached
    set_level(level)

    use_journal = under_systemd() if journal is None else journal
    handler = _journal_handler(journal_sender) if use_journal else None
    if handler is not None:
        handler.setFormatter(logging.Formatter(JOURNAL_FORMAT))
    elif use_journal:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PREFIXED_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    if use_journal and not faulthandler.is_enabled():
        # A watchdog restart is SIGABRT: leave every thread's stack in the journal,
        # which is how a hung audio thread gets diagnosed.
        faulthandler.enable()
    return handler


def set_level(level: str) -> None:
    """Apply log.level (at start, or when a reload changes it): the HTTP libraries'
    per-request lines show only at "debug"."""
    logging.getLogger().setLevel(level.upper())
    quiet = logging.NOTSET if level.lower() == "debug" else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def _journal_handler(sender: JournalSender | None) -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler, send
    except ImportError:
        return None
    return JournalHandler(sender_function=sender or send, SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
