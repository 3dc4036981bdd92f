"""`edge-agent ask "what time is it"`: one turn from typed text, without a
microphone or speech recognition.

The text goes through the daemon's own TurnRunner: local intents, the cloud LLM
(if the cloud answers one probe), or the offline notice naming the cause the
daemon would (no key, key refused, DNS...), exactly as after STT,
then to the configured speaker (a .wav output works) with cloud TTS or Piper.
With ``speak=False`` no voice is loaded and only the answer's text comes back.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.agent.daemon import build_cloud, cloud_unavailable, probe_cloud
from edge_agent.agent.turn import TurnResult, TurnRunner
from edge_agent.audio import Player
from edge_agent.cloud import Conversation
from edge_agent.config import Settings
from edge_agent.errors import AudioDeviceError
from edge_agent.events import Event, EventBus
from edge_agent.intents import LocalIntents, Timers, device_tools
from edge_agent.net import Connectivity

log = logging.getLogger(__name__)

NO_AUDIO = np.zeros(0, dtype=np.int16)


class TypedText:
    """The keyboard as the recognizer: it "hears" the text it was given."""

    name = "typed"

    def __init__(self, text: str) -> None:
        self.text = text

    async def transcribe(self, audio: np.ndarray) -> str:
        return self.text


@dataclass
class _Device:
    """What the device tools act on, for one question: volume changes and mute
    last only as long as the command (the running daemon, if any, is not touched)."""

    volume: float
    online: bool
    last_answer: str = ""

    def stop(self) -> None:
        pass

    def set_muted(self, muted: bool) -> None:
        pass


async def ask(settings: Settings, text: str, *, output: str | None = None,
              speak: bool = True) -> TurnResult:
    """Answer ``text`` as a turn would; speak it to ``output`` (default
    audio.output) unless ``speak`` is False. AudioDeviceError if the speaker
    cannot be opened."""
    bus = EventBus()
    cloud = build_cloud(settings)
    player = Player(output or settings.audio.output, bus, volume=settings.audio.volume)
    failures: list[str] = []
    unsubscribe = bus.subscribe(lambda e: _note_output_failure(e, failures))
    try:
        piper = None
        if speak:  # first: no speaker, no need to ask anyone anything
            player.open()
            if not player.healthy:
                raise AudioDeviceError(failures[-1] if failures else
                                       f"cannot open output {player.spec!r}")
            from edge_agent.offline import PiperTTS, default_piper_voice  # onnxruntime

            piper = PiperTTS(default_piper_voice(settings.offline))

        connectivity = Connectivity(settings, bus, lambda: probe_cloud(cloud),
                                    unavailable=cloud_unavailable(settings, cloud))
        await connectivity.first_check()
        with tempfile.TemporaryDirectory(prefix="edge-agent-ask-") as scratch:
            # Timers set from here cannot ring (this process ends): keep them out of
            # the daemon's state directory.
            timers = Timers(Path(scratch) / "timers.json", lambda timer: None)
            toolbox = device_tools(_Device(settings.audio.volume, connectivity.online), timers)
            runner = TurnRunner(
                settings, bus, player, connectivity=connectivity,
                cloud_stt=None, vosk=TypedText(text),
                cloud_llm=cloud.llm if cloud else None,
                cloud_tts=cloud.tts if cloud and speak else None,
                piper=piper, intents=LocalIntents(toolbox), toolbox=toolbox,
                conversation=Conversation(settings.cloud))
            return await runner.run(NO_AUDIO, end_of_speech=time.monotonic(), turn_id=1)
    finally:
        unsubscribe()
        player.close()
        if cloud is not None:
            await cloud.client.aclose()


def _note_output_failure(event: Event, failures: list[str]) -> None:
    if event.name == "audio_device" and event.fields.get("direction") == "output" \
            and not event.fields.get("ok"):
        failures.append(str(event.fields.get("reason")))
