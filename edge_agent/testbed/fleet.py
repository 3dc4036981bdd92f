"""Several real daemons in one process, all on one Mosquitto broker, each with a
.wav microphone: the speakers of one home hearing the same talker.

Each daemon starts on a second of silence; ``hear`` then gives every speaker
its recording and reloads them together (SIGHUP's path, which reopens only the
microphone), so the replays start within a few milliseconds of one another, as
one voice reaches microphones in one house.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from edge_agent.agent.daemon import Daemon
from edge_agent.config import load_config
from edge_agent.testbed.broker import Broker
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.recorder import EventRecorder
from edge_agent.tools.voices import silence, write_wav

QUIET = '''
[earcons]
wake = "off"
end = "off"
error = "off"
offline = "off"
'''


def speaker_config(tmp: Path, fake: FakeCloud, mqtt: str, *, extra: str = "",
                   audio_input: str = "idle.wav") -> str:
    return f'''
[audio]
input = "{tmp}/{audio_input}"
output = "{tmp}/out.wav"

[cloud]
base_url = "{fake.base_url}"

[gpio]
enabled = false

[turn]
no_speech_timeout = 1.0

[service]
state_dir = "{tmp}/state"
control_socket = "{tmp}/control.sock"

{mqtt}
{extra}
'''


class Speaker(EventRecorder):
    """One daemon: its directory, config and the events it emitted."""

    def __init__(self, tmp: Path, name: str, fake: FakeCloud, broker: Broker, *,
                 group: str = "home", window: float = 0.2, extra: str = "") -> None:
        self.name = name
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._config_args = (fake, broker.section(name, group=group, window=window), extra)
        write_wav(self.tmp / "idle.wav", silence(1.0))
        self.config = self.tmp / "config.toml"
        self._write_config("idle.wav")
        self.daemon: Daemon
        super().__init__()

    def _write_config(self, audio_input: str) -> None:
        fake, mqtt, extra = self._config_args
        self.config.write_text(speaker_config(self.tmp, fake, mqtt, extra=extra,
                                              audio_input=audio_input))
        self.config.chmod(0o644)

    async def start(self) -> None:
        self.daemon = Daemon(load_config(self.config), pin_factory=False)
        self.daemon.bus.subscribe(self.record)
        await self.daemon.start()
        # Piper synthesizes the offline notices after READY: let that CPU burst
        # pass, or the first wake word meets three busy detectors.
        if self.daemon._prewarm is not None:
            await asyncio.wait({self.daemon._prewarm}, timeout=60)

    def prepare(self, audio: np.ndarray, name: str) -> None:
        write_wav(self.tmp / name, audio)
        self._write_config(name)


class Fleet:
    def __init__(self, tmp: Path, fake: FakeCloud, broker: Broker, names: list[str],
                 **options: Any) -> None:
        self.speakers = [Speaker(tmp, name, fake, broker, **options) for name in names]
        self._recordings = 0

    async def __aenter__(self) -> Fleet:
        await asyncio.gather(*(s.start() for s in self.speakers))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(s.daemon.stop() for s in self.speakers))

    async def hear(self, audios: list[np.ndarray]) -> None:
        """Every speaker starts replaying its recording at (nearly) the same moment."""
        self._recordings += 1
        for speaker, audio in zip(self.speakers, audios, strict=True):
            speaker.prepare(audio, f"heard{self._recordings}.wav")
        await asyncio.gather(*(s.daemon.reload() for s in self.speakers))

    async def connected(self, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while not all(s.daemon.mqtt and s.daemon.mqtt.connected  # noqa: ASYNC110
                          for s in self.speakers):
                await asyncio.sleep(0.02)


class Watcher:
    """A subscriber that keeps every message it gets (Home Assistant's view):
    ``async with Watcher(broker, "#") as w``, then ``await w.wait(topic, payload)``."""

    def __init__(self, broker: Broker, topic: str = "#") -> None:
        self.broker = broker
        self.topic = topic
        self.messages: list[tuple[float, str, bytes]] = []
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self._subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
            await client.subscribe(self.topic, qos=1)
            self._subscribed.set()
            async for message in client.messages:
                self.messages.append((time.monotonic(), str(message.topic),
                                      bytes(message.payload)))

    def latest(self) -> dict[str, bytes]:
        """The last payload per topic."""
        return {topic: payload for _, topic, payload in self.messages}

    async def wait(self, topic: str, payload: bytes | None = None, *,
                   within: float = 10.0, after: float = 0.0) -> float:
        """Until ``topic`` carries ``payload`` (any, if None) in a message that
        arrived after monotonic ``after``; when it arrived."""
        async with asyncio.timeout(within):
            while True:
                for t, seen_topic, seen in self.messages:
                    if (t > after and seen_topic == topic
                            and (payload is None or seen == payload)):
                        return t
                await asyncio.sleep(0.01)
