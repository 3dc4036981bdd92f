"""Status LEDs: one pattern per agent state, driven by events on the bus.

gpiozero runs blinks and fades in its own background thread, so ``show``
returns at once and never sleeps: feedback must not hold up the pipeline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpiozero import LED, PWMLED, RGBLED
from gpiozero.exc import GPIOZeroError

from edge_agent.controls.gpio import GpioError
from edge_agent.controls.patterns import LED_STATES, Pattern, resolve_patterns
from edge_agent.errors import ConfigError
from edge_agent.state import AgentState

if TYPE_CHECKING:
    from gpiozero.pins import Factory

    from edge_agent.config import GpioSettings
    from edge_agent.events import Event, EventBus

log = logging.getLogger(__name__)

_OFF = (0.0, 0.0, 0.0)
_AGENT_STATES = frozenset(AgentState)


class StatusLeds:
    """The LED(s) of ``settings.led_kind`` showing one of ``LED_STATES``.

    Without a factory (no GPIO) or with led_kind "none" there is no device, and
    ``show`` only records ``current``, so callers never need to check.
    """

    def __init__(self, settings: GpioSettings, factory: Factory | None) -> None:
        try:
            self._patterns = resolve_patterns(settings.patterns)
        except ValueError as exc:
            raise ConfigError(f"gpio.patterns: {exc}") from exc
        self._device = _open_device(settings, factory)
        # Events arrive on whichever thread emitted them (loop, audio, GPIO).
        self._lock = threading.Lock()
        self._state = "idle"
        self._online = True
        self._muted = False
        self.current = ""
        self.show("idle")

    def show(self, led_state: str) -> None:
        """Switch to the pattern of ``led_state``; a no-op if it is already showing.

        An agent state shown this way (e.g. the state at start-up) is also
        remembered, so the events that follow are combined with it.
        """
        if led_state not in LED_STATES:
            raise ValueError(f"unknown LED state {led_state!r}; expected one of {LED_STATES}")
        with self._lock:
            if led_state in _AGENT_STATES:
                self._state = led_state
            self._show(led_state)

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Follow "state", "network" and "mute" events; returns the unsubscribe function."""
        return bus.subscribe(self._on_event)

    def close(self) -> None:
        """Turn the LEDs off and release their pins; safe to call twice."""
        with self._lock:
            if self._device is not None:
                self._device.close()
                self._device = None

    def __enter__(self) -> StatusLeds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_event(self, event: Event) -> None:
        with self._lock:
            if event.name == "state":
                self._state = str(event.fields["state"])
            elif event.name == "network":
                self._online = bool(event.fields["online"])
            elif event.name == "mute":
                self._muted = bool(event.fields["muted"])
            else:
                return
            self._show(self._wanted())

    def _wanted(self) -> str:
        # Mute is a privacy promise, so it outranks everything; an error matters
        # more than connectivity; "offline" only shows when nothing else is going
        # on, because a turn in progress (answered on the device) says more.
        if self._muted or self._state == "muted":
            return "muted"
        if self._state == "error":
            return "error"
        if self._state == "idle" and not self._online:
            return "offline"
        if self._state not in LED_STATES:
            log.warning("no LED pattern for agent state %r; showing error", self._state)
            return "error"
        return self._state

    def _show(self, led_state: str) -> None:
        if led_state == self.current:
            return
        self.current = led_state
        if self._device is not None:
            _drive(self._device, self._patterns[led_state])
        log.debug("LED: %s", led_state)


def _open_device(settings: GpioSettings, factory: Factory | None) -> LED | PWMLED | RGBLED | None:
    if factory is None or settings.led_kind == "none":
        return None
    pins = settings.led_pins
    try:
        if settings.led_kind == "rgb":
            return RGBLED(*pins[:3], pwm=True, pin_factory=factory)
        if settings.led_kind == "pwm":
            return PWMLED(pins[0], pin_factory=factory)
        return LED(pins[0], pin_factory=factory)
    except GPIOZeroError as exc:
        raise GpioError(f"gpio.led_pins: cannot drive {settings.led_kind} LED on "
                        f"pins {pins}: {exc}") from exc


def _drive(device: LED | PWMLED | RGBLED, pattern: Pattern) -> None:
    """Start ``pattern``; gpiozero stops any blink in progress first."""
    rhythm = pattern.rhythm
    if pattern.kind == "off":
        device.off()
    elif rhythm is None:  # "on"
        if isinstance(device, RGBLED):
            device.color = pattern.color
        else:
            device.on()
    elif isinstance(device, RGBLED):
        device.blink(rhythm.on, rhythm.off, rhythm.fade_in, rhythm.fade_out,
                     on_color=pattern.color, off_color=_OFF)
    elif isinstance(device, PWMLED):
        device.blink(rhythm.on, rhythm.off, rhythm.fade_in, rhythm.fade_out)
    else:
        # A plain LED cannot fade: the fade time becomes on/off time, which
        # keeps each rhythm's period.
        device.blink(rhythm.on + rhythm.fade_in, rhythm.off + rhythm.fade_out)
