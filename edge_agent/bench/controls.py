"""Controls benchmark: how fast the button, LEDs and earcons answer.

Figures: button press edge -> ``on_press`` and release edge -> TAP on the event
loop (idle loop, and a loop busy with 5 ms CPU slices), median / p95 / worst
over many presses on gpiozero's mock pins; ``StatusLeds.show`` call time when
switching patterns (it must never wait on the LED); time to build the
earcons, built-in and from a custom WAV.

    python -m edge_agent.bench.controls [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge_agent.config import EarconSettings, GpioSettings
from edge_agent.controls import LED_STATES, ButtonAction, Earcons, PushButton, StatusLeds
from edge_agent.controls.earcons import builtin

BUTTON = GpioSettings(bounce_time=0.02, hold_seconds=2.0, mute_hold_seconds=4.0)


def stats_ms(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {"median_ms": round(float(np.median(ms)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "worst_ms": round(float(ms.max()), 3), "n": len(values)}


async def _button_latency(presses: int, busy: bool) -> dict[str, dict[str, float]]:
    loop = asyncio.get_running_loop()
    factory = MockFactory()
    pressed_at: list[float] = []
    released_at: list[float] = []
    press_seen: list[float] = []
    tap_seen: list[float] = []
    done = asyncio.Event()

    def on_action(action: ButtonAction) -> None:
        if action == ButtonAction.TAP:
            tap_seen.append(time.monotonic())
            if len(tap_seen) == presses:
                done.set()

    def drive() -> None:
        pin = factory.pin(17)
        for _ in range(presses):
            pressed_at.append(time.monotonic())
            pin.drive_low()
            time.sleep(0.03)
            released_at.append(time.monotonic())
            pin.drive_high()
            time.sleep(0.03)

    async def hog() -> None:
        # Other work on the loop: 5 ms of CPU at a time, as a busy turn might do.
        while not done.is_set():
            end = time.monotonic() + 0.005
            while time.monotonic() < end:
                pass
            await asyncio.sleep(0)

    with PushButton(BUTTON, factory, loop, on_action,
                    on_press=lambda: press_seen.append(time.monotonic())):
        hogging = asyncio.create_task(hog()) if busy else None
        await asyncio.wait_for(asyncio.to_thread(drive), 600)
        await asyncio.wait_for(done.wait(), 30)
        if hogging is not None:
            await asyncio.wait_for(hogging, 30)
    factory.close()
    return {"press_to_on_press": stats_ms([s - p for s, p in zip(press_seen, pressed_at,
                                                                   strict=True)]),
            "release_to_tap": stats_ms([s - r for s, r in zip(tap_seen, released_at,
                                                               strict=True)])}


def _led_show_times(switches: int) -> dict[str, float]:
    factory = MockFactory(pin_class=MockPWMPin)
    took = []
    with StatusLeds(GpioSettings(), factory) as leds:
        for i in range(switches):
            state = LED_STATES[i % len(LED_STATES)]
            started = time.perf_counter()
            leds.show(state)
            took.append(time.perf_counter() - started)
            time.sleep(0.01)  # let a blink thread get going before it is stopped
    factory.close()
    return stats_ms(took)


def _earcon_times() -> dict[str, float]:
    builtin.cache_clear()
    started = time.perf_counter()
    Earcons(EarconSettings())
    builtin_ms = (time.perf_counter() - started) * 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chime.wav"
        with wave.open(str(path), "wb") as wav:  # 1 s, 48 kHz, stereo, 24-bit
            wav.setnchannels(2)
            wav.setsampwidth(3)
            wav.setframerate(48000)
            wav.writeframes(np.random.default_rng(0).integers(0, 256, 48000 * 6, np.uint8)
                            .tobytes())
        started = time.perf_counter()
        Earcons(EarconSettings(wake=str(path), end=str(path), error=str(path),
                               offline=str(path)))
        wav_ms = (time.perf_counter() - started) * 1000 / 4
    return {"builtin_all_ms": round(builtin_ms, 2), "wav_1s_48k_stereo_24bit_ms": round(wav_ms, 2)}


def run(quick: bool = False) -> dict:
    presses = 30 if quick else 200
    return {
        "button_idle_loop": asyncio.run(_button_latency(presses, busy=False)),
        "button_busy_loop": asyncio.run(_button_latency(presses, busy=True)),
        "led_show_call": _led_show_times(50 if quick else 300),
        "earcons": _earcon_times(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
