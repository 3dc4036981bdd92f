"""The real daemon in this process on .wav devices: a .wav microphone replayed
in real time, a .wav speaker, the fake cloud on 127.0.0.1 and the real gpiozero
button on MockFactory pins.

``Harness`` runs ``Daemon.run()`` in-process so events and the ring can be
observed. Timelines are written in input-WAV seconds: the ring's sample clock
starts at 0 when the microphone opens, so ``ring.total`` says where the replay is.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge_agent.agent.daemon import Daemon
from edge_agent.config import load_config
from edge_agent.events import Event
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.recorder import EventRecorder
from edge_agent.testbed.wait import poll_until
from edge_agent.tools.voices import RATE, piper, read_wav, silence, write_wav

BUTTON_PIN = 17


def config_text(tmp: Path, fake: FakeCloud, extra: str = "") -> str:
    """A config for the harness; ``extra`` is TOML appended (whole sections)."""
    return f'''
[audio]
input = "{tmp}/in.wav"
output = "{tmp}/out.wav"

[cloud]
base_url = "{fake.base_url}"

[gpio]
button = {BUTTON_PIN}

[log]
events = "{tmp}/events.jsonl"

[service]
state_dir = "{tmp}/state"
control_socket = "{tmp}/control.sock"

{extra}
'''


class Harness(EventRecorder):
    """One daemon run: write the input WAV and config, start, observe, stop."""

    def __init__(self, tmp: Path, fake: FakeCloud, audio: np.ndarray, *,
                 extra: str = "", gpio: bool = True) -> None:
        self.tmp = tmp
        self.fake = fake
        write_wav(tmp / "in.wav", audio)
        self.config = tmp / "config.toml"
        self.config.write_text(config_text(tmp, fake, extra))
        self.config.chmod(0o644)
        self.factory = MockFactory(pin_class=MockPWMPin) if gpio else None
        super().__init__()
        self.daemon: Daemon
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Harness:
        settings = load_config(self.config)
        self.daemon = Daemon(settings, pin_factory=self.factory if self.factory else False)
        self.daemon.bus.subscribe(self.record)
        self._task = asyncio.create_task(self.daemon.run())
        ready = asyncio.create_task(self.daemon.ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=60,
                                     return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if self._task.done():
                self._task.result()  # start-up failed: show why
            raise TimeoutError("daemon not ready within 60 s")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self.daemon.request_stop()
            await asyncio.wait_for(self._task, 10)
            self._task = None

    # --- observing ------------------------------------------------------------------

    def states(self) -> list[str]:
        return [e.fields["state"] for e in self.named("state")]

    async def wait_event(self, name: str, *, count: int = 1, within: float = 30.0,
                         **match: Any) -> Event:
        """The ``count``-th event called ``name`` (with ``match`` fields)."""
        try:
            await poll_until(lambda: len(self.named(name, **match)) >= count, within)
        except TimeoutError:
            seen = [(e.name, e.fields) for e in self.events]
            raise AssertionError(f"no {name} {match} (#{count}) in {seen}") from None
        return self.named(name, **match)[count - 1]

    async def at_input_second(self, seconds: float, within: float = 60.0) -> None:
        """Wait until the microphone replay reaches ``seconds`` into the input WAV."""
        index = int(seconds * RATE)
        await poll_until(lambda: self.daemon.ring.total >= index, within)

    # --- touching ---------------------------------------------------------------------

    def button(self, pressed: bool) -> None:
        pin = self.factory.pin(BUTTON_PIN)
        if pressed:
            pin.drive_low()  # pull-up: pressed pulls the pin to ground
        else:
            pin.drive_high()

    async def tap(self, hold: float = 0.08) -> float:
        """A short press; returns the monotonic time of the press."""
        pressed = time.monotonic()
        self.button(True)
        await asyncio.sleep(hold)
        self.button(False)
        return pressed

    def output(self) -> np.ndarray:
        """The speaker WAV (complete once the daemon stopped)."""
        return read_wav(self.tmp / "out.wav")


def run(coro: Any, timeout: float = 120.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wake_then(text: str, *, before: float = 1.0, after: float = 3.0) -> np.ndarray:
    """Silence, "hey jarvis", a short breath, ``text``, silence."""
    return np.concatenate([silence(before), piper("hey jarvis"), silence(0.15), piper(text),
                           silence(after)])


NO_EARCONS = '[earcons]\nwake = "off"\nend = "off"\nerror = "off"\noffline = "off"\n'
