"""Status LEDs on gpiozero's MockFactory: real LED/PWMLED/RGBLED objects, their
real blink threads, and what the mock pins actually went through."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpiozero import Button
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from edge_agent.cli import main
from edge_agent.config import GpioSettings
from edge_agent.controls import DEFAULT_PATTERNS, LED_STATES, GpioError, StatusLeds, parse_pattern
from edge_agent.errors import ConfigError
from edge_agent.events import EventBus

WINDOW = 1.75  # seconds watched: a few cycles of the fast rhythms, one of the slow ones


@dataclass(frozen=True)
class Seen:
    """What an LED's pins did during the window."""

    color: tuple[float, ...]  # the brightest value of each channel
    runs: int  # separate stretches of light
    lit: float  # fraction of the window with any light
    fades: bool  # values between off and full were shown

    def signature(self) -> tuple:
        return (tuple(round(c, 2) for c in self.color), self.fades, self.runs,
                round(self.lit * 4))


def replay(pins: list[MockPin], window: float = WINDOW) -> Seen:
    """The pins' recorded changes (cleared at the start of the window), replayed."""
    changes: list[tuple[float, int, float]] = []
    for channel, pin in enumerate(pins):
        t = 0.0
        for state in list(pin.states):
            t += state.timestamp
            if t <= window:
                changes.append((t, channel, float(state.state)))
    changes.sort()
    values = [0.0] * len(pins)
    peak = [0.0] * len(pins)
    shown: list[set[float]] = [set() for _ in pins]
    runs, lit_time, lit_since = 0, 0.0, None
    for t, channel, value in changes:
        values[channel] = value
        peak[channel] = max(peak[channel], value)
        shown[channel].add(value)
        lit = any(v > 0 for v in values)
        if lit and lit_since is None:
            runs, lit_since = runs + 1, t
        elif not lit and lit_since is not None:
            lit_time, lit_since = lit_time + t - lit_since, None
    if lit_since is not None:
        lit_time += window - lit_since
    fades = any(0 < v < p for vs, p in zip(shown, peak, strict=True) for v in vs)
    return Seen(tuple(peak), runs, lit_time / window, fades)


KINDS = {  # led_kind -> (mock pin class, pins used)
    "rgb": (MockPWMPin, [5, 6, 13]),
    "pwm": (MockPWMPin, [5]),
    "led": (MockPin, [5]),
}


def observe_all_states(kind: str, patterns: dict[str, str] | None = None) -> dict[str, Seen]:
    """Each state shown on its own LED, all watched over the same window."""
    pin_class, pins = KINDS[kind]
    settings = GpioSettings(led_kind=kind, led_pins=pins, patterns=patterns or {})
    rigs = []
    try:
        for state in LED_STATES:
            factory = MockFactory(pin_class=pin_class)
            rigs.append((state, factory, StatusLeds(settings, factory),
                         [factory.pin(p) for p in pins]))
        for state, _, leds, pin_list in rigs:
            for pin in pin_list:
                pin.clear_states()
            leds.show(state)
        time.sleep(WINDOW + 0.1)
        return {state: replay(pin_list) for state, _, _, pin_list in rigs}
    finally:
        for _, factory, leds, _ in rigs:
            leds.close()
            factory.close()


@pytest.mark.parametrize("kind", ["rgb", "pwm", "led"])
def test_every_state_has_its_own_pattern(kind: str) -> None:
    seen = observe_all_states(kind)
    signatures = {state: s.signature() for state, s in seen.items()}
    assert len(set(signatures.values())) == len(LED_STATES), signatures

    for state, s in seen.items():
        pattern = parse_pattern(DEFAULT_PATTERNS[state])
        expected_color = pattern.color if kind == "rgb" else (1.0,)
        if pattern.kind == "off":
            assert s.runs == 0 and s.lit == 0, (state, s)
            continue
        assert s.color == pytest.approx(expected_color, abs=0.01), (state, s)
        if pattern.kind == "on":
            assert s.runs == 1 and s.lit > 0.95 and not s.fades, (state, s)
        else:
            rhythm = pattern.rhythm
            can_fade = kind != "led" and (rhythm.fade_in or rhythm.fade_out)
            assert s.fades == bool(can_fade), (state, s)
            assert 0 < s.lit < 1, (state, s)

    # The rhythms compared with each other in this one run: faster ones light up
    # more often; the blip is the shortest light.
    runs = {state: s.runs for state, s in seen.items()}
    assert runs["error"] > runs["thinking"] > runs["offline"] > runs["speaking"], runs
    assert runs["offline"] > runs["muted"], runs
    assert seen["muted"].lit < min(seen[s].lit for s in ("offline", "error", "speaking"))


def test_config_overrides_a_state_and_keeps_the_others() -> None:
    seen = observe_all_states("rgb", {"speaking": "on:#ff8000", "listening": "flash:magenta"})
    assert seen["speaking"].runs == 1 and seen["speaking"].lit > 0.95
    assert seen["speaking"].color == pytest.approx((1.0, 128 / 255, 0.0), abs=0.01)
    assert seen["listening"].color == pytest.approx((1.0, 0.0, 1.0))
    assert seen["listening"].runs >= 4 and not seen["listening"].fades
    assert seen["error"].color == pytest.approx((1.0, 0.0, 0.0)), "untouched default"

    factory = MockFactory(pin_class=MockPWMPin)
    with StatusLeds(GpioSettings(patterns={"idle": "on:white"}), factory):
        assert [factory.pin(p).state for p in (5, 6, 13)] == [1, 1, 1], "idle shows at once"
    factory.close()


def test_attach_follows_events_with_mute_and_error_first() -> None:
    factory = MockFactory(pin_class=MockPWMPin)
    bus = EventBus()
    with StatusLeds(GpioSettings(), factory) as leds:
        red, green, blue = (factory.pin(p) for p in (5, 6, 13))
        unsubscribe = leds.attach(bus)
        assert leds.current == "idle" and (red.state, green.state, blue.state) == (0, 0, 0)

        bus.emit("state", state="listening")
        assert leds.current == "listening" and (red.state, green.state, blue.state) == (0, 0, 1)
        bus.emit("network", online=False)
        assert leds.current == "listening", "a turn in progress says more than offline"
        bus.emit("state", state="idle")
        assert leds.current == "offline"
        bus.emit("state", state="error")
        assert leds.current == "error"
        bus.emit("mute", muted=True)
        assert leds.current == "muted", "the privacy promise outranks everything"
        bus.emit("state", state="thinking")
        assert leds.current == "muted"
        bus.emit("mute", muted=False)
        assert leds.current == "thinking"
        bus.emit("network", online=True)
        bus.emit("state", state="idle")
        assert leds.current == "idle"

        # Events from another thread (audio, GPIO) land the same way.
        worker = threading.Thread(target=bus.emit, args=("state",), kwargs={"state": "speaking"})
        worker.start()
        worker.join(5)
        assert leds.current == "speaking"

        unsubscribe()
        bus.emit("state", state="listening")
        assert leds.current == "speaking"
    factory.close()


def test_a_shown_start_state_is_combined_with_later_events() -> None:
    """The agent shows its state at start-up (muted survives a restart); a network
    event arriving afterwards must not drop the muted LED."""
    bus = EventBus()
    with StatusLeds(GpioSettings(), None) as leds:
        leds.attach(bus)
        leds.show("muted")
        bus.emit("network", online=False)
        assert leds.current == "muted"


def test_show_returns_while_the_pattern_runs_on() -> None:
    factory = MockFactory(pin_class=MockPWMPin)
    with StatusLeds(GpioSettings(led_kind="pwm", led_pins=[5]), factory) as leds:
        pin = factory.pin(5)
        leds.show("error")  # flashes in gpiozero's thread
        first = len(pin.states)
        time.sleep(0.5)
        assert len(pin.states) > first + 2, "still flashing after show returned"
        leds.show("listening")
        assert pin.state == 1.0
        settled = len(pin.states)
        time.sleep(0.3)
        assert len(pin.states) == settled, "the old pattern's thread is stopped"
    assert pin.state == 0, "close turns the LED off"
    factory.close()


def test_without_gpio_or_led_the_state_is_still_tracked() -> None:
    factory = MockFactory()
    for settings, pin_factory in ((GpioSettings(), None),
                                  (GpioSettings(led_kind="none"), factory)):
        leds = StatusLeds(settings, pin_factory)
        leds.show("thinking")
        assert leds.current == "thinking"
        leds.close()
        leds.close()
    # led_kind "none" reserved nothing: the pins are free.
    Button(5, pin_factory=factory).close()
    factory.close()


def test_unknown_state_is_refused() -> None:
    with StatusLeds(GpioSettings(), None) as leds, pytest.raises(ValueError, match="sparkling"):
        leds.show("sparkling")


def test_pins_in_use_are_a_gpio_error_naming_the_key() -> None:
    factory = MockFactory(pin_class=MockPWMPin)
    with Button(6, pin_factory=factory), pytest.raises(GpioError, match=r"gpio\.led_pins"):
        StatusLeds(GpioSettings(), factory)
    factory.close()


@pytest.mark.parametrize(("text", "kind", "color"), [
    ("off", "off", (0.0, 0.0, 0.0)),
    ("on:blue", "on", (0.0, 0.0, 1.0)),
    (" Pulse:#FF0080 ", "pulse", (1.0, 0.0, 128 / 255)),
    ("blip:orange", "blip", (1.0, 0.4, 0.0)),
])
def test_pattern_strings(text: str, kind: str, color: tuple[float, float, float]) -> None:
    pattern = parse_pattern(text)
    assert pattern.kind == kind
    assert pattern.color == pytest.approx(color)


@pytest.mark.parametrize("text", ["", "on", "blink", "sparkle:red", "on:purple", "on:#12345",
                                  "pulse:#gg0000", "off:red"])
def test_bad_pattern_strings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="KIND:COLOR"):
        parse_pattern(text)
    with pytest.raises(ConfigError, match=r"gpio\.patterns"):
        StatusLeds(GpioSettings(patterns={"thinking": text}), None)


def test_check_config_rejects_a_bad_pattern(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edge-agent.toml"
    config.write_text('[gpio]\npatterns = { thinking = "sparkle:blue", idle = "on:cyan" }\n')
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "gpio.patterns.thinking" in err and "sparkle:blue" in err
    assert "gpio.patterns.idle" not in err

    config.write_text('[gpio]\npatterns = { thinking = "breathe:#00ff88" }\n')
    assert main(["check-config", str(config)]) == 0
