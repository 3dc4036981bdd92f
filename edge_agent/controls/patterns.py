"""LED patterns: the grammar, the rhythms and the one default table.

Kept free of gpiozero so config validation (``edge-agent check-config``) can
parse pattern strings without touching GPIO.

A pattern is "off" or ``KIND:COLOR``. Each kind is a rhythm with its own
timing, so the seven agent states stay distinct on a single LED, where colour
is lost; on an RGB LED the colour adds meaning on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_agent.config import AGENT_LED_STATES

LED_STATES = AGENT_LED_STATES
RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Rhythm:
    """One cycle in seconds: fade in, stay on, fade out, stay off."""

    on: float = 0.0
    off: float = 0.0
    fade_in: float = 0.0
    fade_out: float = 0.0


# Periods and duty cycles all differ, so a plain on/off LED (which turns fades
# into on/off time) still tells them apart: 0.5 s, 0.2 s, 2 s at 5 %, 0.5 s
# fading, 2 s fading.
RHYTHMS: dict[str, Rhythm] = {
    "blink": Rhythm(on=0.5, off=0.5),
    "flash": Rhythm(on=0.1, off=0.1),
    "blip": Rhythm(on=0.1, off=1.9),
    "pulse": Rhythm(fade_in=0.25, fade_out=0.25),
    "breathe": Rhythm(fade_in=1.0, fade_out=1.0),
}
KINDS = ("off", "on", *RHYTHMS)

COLORS: dict[str, RGB] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "orange": (1.0, 0.4, 0.0),
}
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")

DEFAULT_PATTERNS: dict[str, str] = {
    "idle": "off",
    "listening": "on:blue",  # steady: "I hear you"
    "thinking": "pulse:cyan",  # quick fade: busy
    "speaking": "breathe:green",
    "offline": "blink:orange",  # needs the owner's attention, not alarming
    "muted": "blip:red",  # the privacy promise, visible but calm
    "error": "flash:red",
}


@dataclass(frozen=True)
class Pattern:
    kind: str
    color: RGB = (0.0, 0.0, 0.0)

    @property
    def rhythm(self) -> Rhythm | None:
        """None for the steady kinds "off" and "on"."""
        return RHYTHMS.get(self.kind)


EXPECTED = (
    '"off" or KIND:COLOR with KIND one of ' + ", ".join(KINDS[1:])
    + " and COLOR one of " + ", ".join(COLORS) + " or #rrggbb"
)


def parse_pattern(text: str) -> Pattern:
    """``"pulse:cyan"`` -> Pattern; ValueError saying what was expected otherwise."""
    spec = text.strip().lower()
    if spec == "off":
        return Pattern("off")
    kind, _, color = spec.partition(":")
    if kind not in KINDS[1:] or not color:
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    return Pattern(kind, _parse_color(color, text))


def _parse_color(color: str, text: str) -> RGB:
    if color in COLORS:
        return COLORS[color]
    if _HEX.match(color):
        r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
        return (r, g, b)
    raise ValueError(f"expected {EXPECTED}, got {text!r}")


def resolve_patterns(overrides: dict[str, str]) -> dict[str, Pattern]:
    """The default table with the config's overrides applied, parsed."""
    return {state: parse_pattern(overrides.get(state, DEFAULT_PATTERNS[state]))
            for state in LED_STATES}
