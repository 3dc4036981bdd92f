"""The push-to-talk button: one gesture, one action, whatever the contacts do.

gpiozero reports raw edges on its own thread; each is stamped there and handed
to the event loop, where one small state machine debounces them and times the
hold. All decisions happen on the loop thread, so there are no locks and the
actions reach ``on_action`` in the order the hand made them.

Debouncing is ours rather than gpiozero's ``bounce_time``: the mock pins
ignore that setting, and RPi.GPIO's version drops every edge inside the window,
so a quick tap can lose its release and leave the button "held" for good. Here
the first edge counts at once (no added latency before a barge-in), edges
inside ``bounce_time`` after it are ignored, and when the window closes the
pin is read again so a release that fell inside it is never lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpiozero import Button
from gpiozero.exc import GPIOZeroError

from edge_agent.controls.gpio import GpioError

if TYPE_CHECKING:
    from gpiozero.pins import Factory

    from edge_agent.config import GpioSettings

log = logging.getLogger(__name__)


class ButtonAction(enum.StrEnum):
    TAP = "tap"
    """Released before hold_seconds: start a turn, or barge in while speaking."""
    TALK_START = "talk_start"
    """Held past hold_seconds: push-to-talk begins."""
    TALK_END = "talk_end"
    """Released after TALK_START and before mute_hold_seconds."""
    MUTE_TOGGLE = "mute_toggle"
    """Held past mute_hold_seconds; the release that follows emits nothing."""


class PushButton:
    """A gpiozero ``Button`` turned into ``ButtonAction`` calls on the event loop.

    ``on_action`` always runs on ``loop``'s thread. Without a factory (no GPIO)
    or with ``settings.button == ""`` there is no button and nothing is ever
    called.

    ``on_press`` (optional, also on the loop thread) is called the moment the
    button goes down, before the gesture is known: a tap is only a tap at its
    release, so barge-in (stop talking within 50 ms of the press) belongs here.
    """

    def __init__(
        self,
        settings: GpioSettings,
        factory: Factory | None,
        loop: asyncio.AbstractEventLoop,
        on_action: Callable[[ButtonAction], None],
        *,
        on_press: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._on_action = on_action
        self._on_press = on_press
        self._bounce = settings.bounce_time
        self._hold = settings.hold_seconds
        self._mute_hold = settings.mute_hold_seconds
        # Debounced level and the gesture in progress (loop thread only).
        self._pressed = False
        self._pressed_at = 0.0
        self._ignore_until = 0.0
        self._last_edge_at = 0.0
        self._talking = False
        self._mute_sent = False
        self._timers: list[asyncio.TimerHandle] = []
        self._settle: asyncio.TimerHandle | None = None
        self._button: Button | None = None
        if factory is None or settings.button == "":
            return
        try:
            # bounce_time=None: debouncing is done here (see the module docstring).
            self._button = Button(settings.button, pull_up=settings.pull_up,
                                  bounce_time=None, pin_factory=factory)
        except GPIOZeroError as exc:
            raise GpioError(f"gpio.button: cannot use pin {settings.button!r}: {exc}") from exc
        self._button.when_pressed = self._pressed_edge
        self._button.when_released = self._released_edge

    def close(self) -> None:
        """Release the pin and drop any gesture in progress; safe to call twice.

        Call it on the loop's thread (the timers it cancels belong to the loop).
        """
        button, self._button = self._button, None
        if button is not None:
            button.close()
        self._cancel_timers()
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None

    def __enter__(self) -> PushButton:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- gpiozero's thread: stamp the edge and hand it over, nothing more ---

    def _pressed_edge(self) -> None:
        self._hand_over(True)

    def _released_edge(self) -> None:
        self._hand_over(False)

    def _hand_over(self, pressed: bool) -> None:
        try:
            self._loop.call_soon_threadsafe(self._edge, pressed, time.monotonic())
        except RuntimeError:
            log.debug("button edge after the event loop closed; ignored")

    # --- the loop's thread ---

    def _edge(self, pressed: bool, at: float) -> None:
        self._last_edge_at = at
        if self._button is None or at < self._ignore_until or pressed == self._pressed:
            return
        self._commit(pressed, at)

    def _commit(self, pressed: bool, at: float) -> None:
        self._pressed = pressed
        if self._bounce > 0:
            self._ignore_until = at + self._bounce
            if self._settle is not None:
                self._settle.cancel()
            self._settle = self._loop.call_at(self._ignore_until, self._settled)
        if pressed:
            self._gesture_started(at)
        else:
            self._gesture_ended(at)

    def _settled(self) -> None:
        """The bounce window closed: catch up with a level change that fell inside it."""
        self._settle = None
        if self._button is None:
            return
        level = self._button.is_pressed
        if level != self._pressed:
            # The last edge seen is when the contacts really changed.
            self._commit(level, max(self._last_edge_at, self._ignore_until - self._bounce))

    def _gesture_started(self, at: float) -> None:
        self._cancel_timers()
        self._pressed_at = at
        self._talking = False
        self._mute_sent = False
        self._timers = [self._loop.call_at(at + self._hold, self._talk_start),
                        self._loop.call_at(at + self._mute_hold, self._mute_toggle)]
        if self._on_press is not None:
            self._call(self._on_press)

    def _gesture_ended(self, at: float) -> None:
        self._cancel_timers()
        held = at - self._pressed_at
        # A busy loop may see the release before a timer that was already due;
        # the edge times decide, so the gesture is the one the hand made.
        if held >= self._hold and not self._talking:
            self._talk_start()
        if held >= self._mute_hold and not self._mute_sent:
            self._mute_toggle()
        if self._mute_sent:
            return
        self._emit(ButtonAction.TALK_END if self._talking else ButtonAction.TAP)

    def _talk_start(self) -> None:
        self._talking = True
        self._emit(ButtonAction.TALK_START)

    def _mute_toggle(self) -> None:
        self._mute_sent = True
        self._emit(ButtonAction.MUTE_TOGGLE)

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []

    def _emit(self, action: ButtonAction) -> None:
        log.debug("button: %s", action)
        self._call(self._on_action, action)

    @staticmethod
    def _call(handler: Callable[..., None], *args: object) -> None:
        try:
            handler(*args)
        except Exception:
            # The agent's handler failing must not leave the button half-way
            # through a gesture; the state is already consistent when it runs.
            log.exception("button handler %r failed", handler)
