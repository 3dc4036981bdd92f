"""The device tools: what the speaker can do by itself. Defined once, so the
cloud LLM's tool calls and the local intents act through the same code and say
the same things."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from edge_agent.errors import StateError
from edge_agent.intents.phrases import say_duration
from edge_agent.intents.timers import Timer, Timers, timer_label
from edge_agent.intents.tools import Tool, Toolbox

VOLUME_STEP = 10
"""Percent that "louder" and "quieter" move the volume."""
RING_NAMES = 3
"""Timers named in one announcement when several ring at once (300 overdue at start
are one announcement, not 300 queued ones)."""


class Device(Protocol):
    """What tools may act on; the agent implements it."""

    volume: float
    """0..1, settable."""
    online: bool
    last_answer: str

    def stop(self) -> None:
        """Stop talking and silence a ringing timer."""

    def set_muted(self, muted: bool) -> None: ...


def timer_name(timer: Timer) -> str:
    """How a timer is called out loud: "the pasta timer", "the 5 minute timer"."""
    if timer.label:
        return f"the {timer.label} timer"
    length = re.sub(r"(hour|minute|second)s", r"\1", say_duration(timer.duration))
    return f"the {length} timer"


def ring_announcement(timers: Sequence[Timer]) -> str:
    """What to say when ``timers`` are done: one sentence however many there are."""
    if len(timers) == 1:
        label = timers[0].label
        return f"Your {label} timer is done." if label else "Your timer is done."
    names = [t.label for t in timers if t.label][:RING_NAMES]
    if not names:
        return f"{len(timers)} timers are done."
    rest = len(timers) - len(names)
    listed = names + ([f"{rest} more"] if rest else [])
    return f"{len(timers)} timers are done: {', '.join(listed[:-1])} and {listed[-1]}."


def _label_schema(what: str) -> dict:
    return {"type": "string", "description": f"Name of the timer {what}; empty for any/all."}


def device_tools(
    device: Device, timers: Timers, *, now: Callable[[], datetime] | None = None
) -> Toolbox:
    """The tools, bound to one device and its timers. ``now`` (local time) is for tests."""
    clock = now or (lambda: datetime.now().astimezone())

    def get_time() -> str:
        t = clock()
        return f"It's {t.hour % 12 or 12}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}."

    def get_date() -> str:
        t = clock()
        return f"Today is {t:%A}, {t:%B} {t.day}, {t.year}."

    def set_timer(seconds: float, label: str = "") -> str:
        seconds = float(seconds)
        if not 0 < seconds <= 24 * 3600:
            return "I can set timers from one second up to 24 hours."
        try:
            timer = timers.set(seconds, str(label))
        except ValueError as exc:  # too many timers, or too long a name
            return str(exc)
        name = f"{timer.label} timer" if timer.label else "Timer"
        return f"{name.capitalize()} set for {say_duration(seconds)}."

    def cancel_timer(label: str = "") -> str:
        label = timer_label(label)
        running = timers.remaining()
        if not running:
            return "There are no timers running."
        if label and not any(t.label == label for t in running):
            return f"There is no {label} timer."
        cancelled = timers.cancel(label or None)
        if cancelled == 1:
            which = f"the {label} timer" if label else timer_name(running[0])
            return f"Cancelled {which}."
        return f"Cancelled {cancelled} timers."

    def timer_status(label: str = "") -> str:
        label = timer_label(label)
        running = [t for t in timers.remaining() if not label or t.label == label]
        if not running:
            return f"There is no {label} timer." if label else "There are no timers running."
        parts = [f"{say_duration(t.remaining)} left on {timer_name(t)}" for t in running]
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."

    def set_volume(percent: float) -> str:
        device.volume = min(100.0, max(0.0, float(percent))) / 100
        return f"Volume {round(device.volume * 100)} percent."

    def change_volume(direction: str, percent: float = VOLUME_STEP) -> str:
        sign = {"up": 1, "down": -1}.get(direction)
        if sign is None:
            return "error: direction must be up or down"
        return set_volume(device.volume * 100 + sign * float(percent))

    def stop() -> str:
        device.stop()
        return "Stopped."

    def mute() -> str:
        try:
            device.set_muted(True)
        except StateError:
            return "Microphone off for now, but I could not save that, so a restart " \
                "would turn it back on."
        # No voice command can unmute a muted microphone: say what can.
        return "Microphone off. The button, or edge-agent unmute, turns it back on."

    def network_status() -> str:
        if device.online:
            return "I'm online."
        return "I'm offline right now, but I can still tell the time, set timers and more."

    def repeat_last_answer() -> str:
        return device.last_answer or "I haven't said anything yet."

    seconds = {"type": "number", "description": "Length of the timer in seconds."}
    percent = {"type": "number", "description": "Percent, 0 to 100."}
    return Toolbox([
        Tool("get_time", "The current local time.", get_time, acts=False),
        Tool("get_date", "Today's date and weekday.", get_date, acts=False),
        Tool("set_timer", "Start a countdown timer that rings when done; works offline.",
             set_timer, _params(required=["seconds"], seconds=seconds,
                                label=_label_schema("(optional), e.g. pasta"))),
        Tool("cancel_timer", "Cancel a running timer, or all of them.", cancel_timer,
             _params(label=_label_schema("to cancel"))),
        Tool("timer_status", "How long is left on running timers.", timer_status,
             _params(label=_label_schema("to ask about")), acts=False),
        Tool("set_volume", "Set the speaker volume.", set_volume,
             _params(required=["percent"], percent=percent)),
        Tool("change_volume", "Turn the speaker volume up or down by some percent.",
             change_volume,
             _params(required=["direction"],
                     direction={"type": "string", "enum": ["up", "down"]},
                     percent={**percent, "description": "How much; default 10."})),
        Tool("stop", "Stop talking or silence a ringing timer.", stop),
        Tool("mute", "Turn the microphone off (privacy); only the button or the control "
             "socket turn it back on.", mute),
        Tool("network_status", "Whether the speaker is online.", network_status,
             acts=False),
        Tool("repeat_last_answer", "Repeat the previous answer word for word.",
             repeat_last_answer, acts=False),
    ])


def _params(required: list[str] | None = None, **properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": required or []}
