"""The push-to-talk button on gpiozero's MockFactory: a real gpiozero Button,
real debouncing and hold timing, pins driven from another thread as the GPIO
driver would, and actions received on a running asyncio loop."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from edge_agent.config import GpioSettings
from edge_agent.controls import ButtonAction, GpioError, PushButton

TAP, START, END, MUTE = (ButtonAction.TAP, ButtonAction.TALK_START, ButtonAction.TALK_END,
                         ButtonAction.MUTE_TOGGLE)
PIN = 17


class Harness:
    """A PushButton on a mock pin whose actions land in a queue on the loop."""

    def __init__(self, settings: GpioSettings) -> None:
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.factory = MockFactory()
        self.actions: asyncio.Queue[ButtonAction] = asyncio.Queue()
        self.threads: set[int] = set()
        self.button = PushButton(settings, self.factory, self.loop, self._on_action)
        self.pin: MockPin = self.factory.pin(PIN)

    def _on_action(self, action: ButtonAction) -> None:
        self.threads.add(threading.get_ident())
        self.actions.put_nowait(action)

    async def drive(self, script: Callable[[MockPin], None]) -> None:
        """Run ``script`` on its own thread, as gpiozero's driver thread would."""
        await asyncio.wait_for(asyncio.to_thread(script, self.pin), timeout=120)

    async def next(self) -> ButtonAction:
        return await asyncio.wait_for(self.actions.get(), 10)

    async def rest(self) -> list[ButtonAction]:
        """Everything still to come once the last bounce window and timers have passed."""
        await asyncio.sleep(self.settings.bounce_time * 2 + 0.2)
        found = []
        while not self.actions.empty():
            found.append(self.actions.get_nowait())
        return found

    def close(self) -> None:
        self.button.close()
        self.factory.close()


def run(scenario: Callable[[], object], timeout: float = 180) -> None:
    async def main() -> None:
        await asyncio.wait_for(scenario(), timeout)

    asyncio.run(main())


def press(pin: MockPin, seconds: float) -> None:
    pin.drive_low()  # pull-up: pressed connects the pin to ground
    time.sleep(seconds)
    pin.drive_high()


def chatter(pin: MockPin, pressed: bool, edges: int) -> float:
    """Contact bounce: ``edges`` alternating edges ending at the ``pressed`` level.
    Returns how long the burst took: microseconds, unless the OS descheduled this
    thread in the middle of it, which makes it a real second gesture."""
    levels = [(pressed if (edges - i) % 2 else not pressed) for i in range(edges)]
    started = time.monotonic()
    for level in [pressed, *levels]:
        (pin.drive_low if level else pin.drive_high)()
    return time.monotonic() - started


# Wide margins between the thresholds: a press of 0.05 s stays a tap and one of
# 0.6 s push-to-talk even when a busy machine wakes the driving thread late.
FAST = GpioSettings(bounce_time=0.02, hold_seconds=0.3, mute_hold_seconds=1.0)


def test_short_press_is_one_tap_on_the_loop_thread() -> None:
    async def scenario() -> None:
        h = Harness(FAST)
        try:
            await h.drive(lambda pin: press(pin, 0.08))
            assert await h.next() == TAP
            assert await h.rest() == []
            assert h.threads == {threading.get_ident()}, "on_action runs on the loop thread"
        finally:
            h.close()

    run(scenario)


def test_hold_is_push_to_talk_started_while_still_held() -> None:
    async def scenario() -> None:
        h = Harness(FAST)
        try:
            await h.drive(lambda pin: pin.drive_low())
            assert await h.next() == START
            assert not h.pin.state, "push-to-talk starts while the button is still down"
            await h.drive(lambda pin: pin.drive_high())
            assert await h.next() == END
            assert await h.rest() == []
        finally:
            h.close()

    run(scenario)


def test_long_hold_toggles_mute_once_and_the_release_says_nothing() -> None:
    async def scenario() -> None:
        h = Harness(FAST)
        try:
            await h.drive(lambda pin: pin.drive_low())
            assert [await h.next(), await h.next()] == [START, MUTE]
            await asyncio.sleep(FAST.mute_hold_seconds)  # held on: still one toggle
            await h.drive(lambda pin: pin.drive_high())
            assert await h.rest() == []
        finally:
            h.close()

    run(scenario)


def test_bouncing_contacts_make_one_tap() -> None:
    async def scenario() -> None:
        h = Harness(GpioSettings(bounce_time=0.05, hold_seconds=1.0, mute_hold_seconds=3.0))
        try:
            bursts: list[float] = []

            def bouncy_tap(pin: MockPin) -> None:
                bursts.append(chatter(pin, True, 6))
                time.sleep(0.15)
                bursts.append(chatter(pin, False, 6))

            await h.drive(bouncy_tap)
            if max(bursts) >= h.settings.bounce_time:
                pytest.skip("the OS stretched a burst past bounce_time: not bounce any more")
            assert await h.next() == TAP
            assert await h.rest() == []
            assert len(h.pin.states) > 10, "the pin really bounced"
        finally:
            h.close()

    run(scenario)


def test_release_inside_the_bounce_window_is_not_lost() -> None:
    """A tap shorter than bounce_time: the release falls in the ignored window and
    is caught when the window closes, so the button is not left "held"."""

    async def scenario() -> None:
        h = Harness(GpioSettings(bounce_time=0.1, hold_seconds=0.5, mute_hold_seconds=1.0))
        try:
            await h.drive(lambda pin: press(pin, 0.01))
            assert await h.next() == TAP
            await asyncio.sleep(h.settings.mute_hold_seconds)
            assert await h.rest() == [], "no push-to-talk or mute from a stuck press"
            await h.drive(lambda pin: press(pin, 0.2))
            assert await h.next() == TAP, "the next press works"
        finally:
            h.close()

    run(scenario)


def test_busy_loop_still_classifies_by_when_the_edges_happened() -> None:
    """The loop is blocked while the button is held past hold_seconds and released:
    the release is handled before the overdue hold timer, yet the gesture is push-to-talk."""

    async def scenario() -> None:
        h = Harness(FAST)
        try:
            held = FAST.hold_seconds * 1.6
            driving = asyncio.create_task(h.drive(lambda pin: press(pin, held)))
            await asyncio.sleep(0.05)  # the press is in
            time.sleep(held * 2)  # noqa: ASYNC251  a loop hog across the release, on purpose
            await asyncio.wait_for(driving, 10)
            assert [await h.next(), await h.next()] == [START, END]
            assert await h.rest() == []
        finally:
            h.close()

    run(scenario)


@pytest.mark.slow
def test_mashing_gives_one_action_per_gesture() -> None:
    """200 random presses and gaps, half of them with contact bounce: exactly 200 taps,
    nothing queued beyond them, and the button still answers afterwards."""
    settings = GpioSettings(bounce_time=0.02, hold_seconds=5.0, mute_hold_seconds=10.0)
    rng = random.Random(7)
    gestures = [(rng.uniform(0.03, 0.06), rng.uniform(0.03, 0.06), rng.random() < 0.5)
                for _ in range(200)]
    stretched = 0  # bursts the OS stretched past bounce_time: each may really be two gestures

    def mash(pin: MockPin) -> None:
        nonlocal stretched
        for down, up, bouncy in gestures:
            for pressed, pause in ((True, down), (False, up)):
                if chatter(pin, pressed, 4 if bouncy else 0) >= settings.bounce_time:
                    stretched += 1
                time.sleep(pause)

    async def scenario() -> None:
        h = Harness(settings)
        try:
            await h.drive(mash)
            got = [await h.next() for _ in gestures] + await h.rest()
            assert set(got) == {TAP}
            assert len(gestures) <= len(got) <= len(gestures) + stretched, stretched
            await h.drive(lambda pin: press(pin, 0.1))
            assert await h.next() == TAP
        finally:
            h.close()

    run(scenario)


def test_mixed_gestures_in_a_row() -> None:
    async def scenario() -> None:
        h = Harness(FAST)
        try:
            script = [(0.05, [TAP]), (0.6, [START, END]), (0.05, [TAP]),
                      (1.3, [START, MUTE]), (0.05, [TAP])]
            for seconds, expected in script:
                await h.drive(lambda pin, s=seconds: press(pin, s))
                assert [await h.next() for _ in expected] == expected
                await asyncio.sleep(FAST.bounce_time * 2)
            assert await h.rest() == []
        finally:
            h.close()

    run(scenario)


def test_on_press_comes_at_the_press_once_per_gesture() -> None:
    """Barge-in needs the press itself, not the tap classified at the release."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        factory = MockFactory()
        events: asyncio.Queue[str] = asyncio.Queue()
        settings = GpioSettings(bounce_time=0.1, hold_seconds=0.5, mute_hold_seconds=1.0)
        with PushButton(settings, factory, loop, lambda a: events.put_nowait(a.value),
                        on_press=lambda: events.put_nowait("press")):
            pin = factory.pin(PIN)
            for _ in range(2):
                await asyncio.wait_for(asyncio.to_thread(chatter, pin, True, 4), 10)
                assert await asyncio.wait_for(events.get(), 10) == "press"
                assert not pin.state, "while the button is still down"
                await asyncio.wait_for(asyncio.to_thread(chatter, pin, False, 4), 10)
                assert await asyncio.wait_for(events.get(), 10) == TAP.value
                await asyncio.sleep(settings.bounce_time * 2)
                assert events.empty()
        factory.close()

    run(scenario)


def test_pull_down_wiring_without_debounce() -> None:
    """pull_up = false: the button connects the pin to 3.3 V, so pressed is high;
    bounce_time = 0 takes every edge as it comes."""
    settings = GpioSettings(pull_up=False, bounce_time=0.0, hold_seconds=0.3,
                            mute_hold_seconds=1.0)

    async def scenario() -> None:
        h = Harness(settings)
        try:
            def taps(pin: MockPin) -> None:
                for _ in range(3):
                    pin.drive_high()
                    time.sleep(0.05)
                    pin.drive_low()
                    time.sleep(0.05)

            await h.drive(taps)
            assert [await h.next() for _ in range(3)] == [TAP] * 3
            assert await h.rest() == []
        finally:
            h.close()

    run(scenario)


def test_a_failing_handler_does_not_wedge_the_button() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        factory = MockFactory()
        seen: list[ButtonAction] = []

        def handler(action: ButtonAction) -> None:
            seen.append(action)
            if len(seen) == 1:
                raise RuntimeError("agent bug")

        with PushButton(FAST, factory, loop, handler):
            pin = factory.pin(PIN)
            for _ in range(2):
                await asyncio.wait_for(asyncio.to_thread(press, pin, 0.05), 10)
                await asyncio.sleep(FAST.bounce_time * 2 + 0.1)
        assert seen == [TAP, TAP]

    run(scenario)


def test_close_is_idempotent_releases_the_pin_and_silences_edges() -> None:
    async def scenario() -> None:
        h = Harness(FAST)
        await h.drive(lambda pin: pin.drive_low())
        h.button.close()  # mid-gesture: the pending push-to-talk is dropped
        h.button.close()
        await h.drive(lambda pin: press(pin, 0.05))
        assert await h.rest() == []
        # The pin is free again for a new button.
        again = PushButton(FAST, h.factory, h.loop, h.actions.put_nowait)
        again.close()
        h.factory.close()

    run(scenario)


def test_no_button_without_gpio_or_without_a_pin() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        calls: list[ButtonAction] = []
        factory = MockFactory()
        for settings, pin_factory in ((FAST, None), (GpioSettings(button=""), factory)):
            with PushButton(settings, pin_factory, loop, calls.append) as button:
                button.close()
        factory.pin(PIN).drive_low()
        await asyncio.sleep(0.1)
        assert calls == []
        factory.close()

    run(scenario)


@pytest.mark.parametrize("pin", ["GPIO99", 99])
def test_an_invalid_pin_is_a_gpio_error_naming_the_key(pin: int | str) -> None:
    async def scenario() -> None:
        factory = MockFactory()
        with pytest.raises(GpioError, match=r"gpio\.button"):
            PushButton(GpioSettings(button=pin), factory, asyncio.get_running_loop(), print)
        factory.close()

    run(scenario)


def test_a_pin_in_use_is_a_gpio_error() -> None:
    async def scenario() -> None:
        factory = MockFactory()
        loop = asyncio.get_running_loop()
        with PushButton(FAST, factory, loop, print), pytest.raises(GpioError, match="in use"):
            PushButton(FAST, factory, loop, print)
        factory.close()

    run(scenario)
