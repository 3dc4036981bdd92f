"""Commands from the broker, parsed strictly: anyone who can publish on the
command topic is a stranger until the payload proves well-formed. A bad one is
refused with a reason (the link logs it); nothing here touches the agent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from edge_agent.service.control import SAY_MAX_CHARS

MAX_PAYLOAD_BYTES = 16 * 1024
"""Longer messages are refused unread: no command needs more (a text is at most
SAY_MAX_CHARS characters, 4 bytes each in the worst UTF-8)."""
COMMANDS = ("mute", "unmute", "volume", "listen", "stop", "say")


class CommandError(ValueError):
    """A payload that is not a command we take; the message says why."""


@dataclass(frozen=True)
class Command:
    name: str
    """One of COMMANDS."""
    volume: float = 0.0
    """0..1, for "volume" (the payload says 0..100, as HA's number entity does)."""
    text: str = ""
    """For "say"."""


def _decode(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"payload of {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise CommandError("JSON nested too deeply") from None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise CommandError("'text' must be a string")
    text = " ".join(value.split())
    if not text:
        raise CommandError("nothing to say")
    if len(text) > SAY_MAX_CHARS:
        raise CommandError(f"text of {len(text)} characters, more than {SAY_MAX_CHARS}")
    return text


def parse_command(payload: bytes) -> Command:
    """A JSON object {"command": ..., "value": 0..100 for volume, "text" for say}."""
    request = _json(_decode(payload))
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise CommandError('expected a JSON object with a "command" string')
    name = request["command"]
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name[:40]!r}; known: {', '.join(COMMANDS)}")
    if name == "volume":
        value = request.get("value")
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not math.isfinite(value) or not 0 <= value <= 100):
            raise CommandError('"volume" needs a "value" from 0 to 100')
        return Command(name, volume=value / 100)
    if name == "say":
        return Command(name, text=_text(request.get("text")))
    return Command(name)


def parse_announcement(payload: bytes) -> str:
    """Plain text, or a JSON object {"text": ...} (what HA's notify service sends)."""
    raw = _decode(payload).strip()
    if raw.startswith("{"):
        request = _json(raw)
        if not isinstance(request, dict):
            raise CommandError('expected plain text or a JSON object with "text"')
        return _text(request.get("text"))
    return _text(raw)
