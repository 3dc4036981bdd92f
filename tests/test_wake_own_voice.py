"""The speaker naming its own wake word does not wake it; a person saying the
word over an answer still does. Real engines and real speech: the played
audio is Piper's joe voice (the daemon's own), heard by the microphone 20 dB
down, as a canceller still converging leaves it, over a -64 dBFS noise floor."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from edge_agent.agent.agent import Agent
from edge_agent.audio import RingBuffer
from edge_agent.config import ServiceSettings, Settings, WakeSettings
from edge_agent.events import EventBus
from edge_agent.testbed.echo_room import Recorded
from edge_agent.tools.voices import espeak, noise, piper, silence
from edge_agent.wake import WakeDetection, WakeDetector
from edge_agent.wake._diagnostics import WakeDiagnostics
from tests.test_statefile import FakePlayer
from tests.test_wake import feed

FRAME = WakeDetector.FRAME_SAMPLES


def residual(played: np.ndarray, db: float = -20.0) -> np.ndarray:
    """The played audio as the cancelled microphone still hears it."""
    return played.astype(np.float64) * 10 ** (db / 20)


def room(*parts: np.ndarray) -> np.ndarray:
    audio = sum(parts) + noise(len(parts[0]) / 16000, seed=7)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def detections(mic: np.ndarray, played: np.ndarray | None) -> tuple[list, WakeDetector]:
    detector = WakeDetector(WakeSettings())
    if played is not None:
        detector.follow_playback(lambda: True, Recorded(played))
    else:
        detector.echo_ready = lambda: True
    detector.set_playing(True)
    return feed(detector, mic), detector


def loud(audio: np.ndarray, peak: float = 20000.0) -> np.ndarray:
    return (audio.astype(np.float64) * peak / np.abs(audio).max()).astype(np.int16)


def answer(text: str, seconds: float) -> np.ndarray:
    """An answer, starting after 2 s of quiet and padded to ``seconds``."""
    audio = np.concatenate([silence(2.0), loud(piper(text))])
    return np.concatenate([audio, silence(seconds - len(audio) / 16000)])


def test_the_speaker_saying_its_wake_word_is_ignored() -> None:
    played = answer("You can say hey jarvis at any time to ask me something else.", 8.0)
    mic = room(residual(played))
    woke, _ = detections(mic, None)
    assert woke, "the residual alone does not wake the detector: no test"
    found, detector = detections(mic, played)
    assert found == []
    assert detector.status()["own_voice_ignored"] == len(woke)
    ignored = detector.ignored_as_own_voice()  # what the wake_own_voice events carry
    assert [(d.model, d.engine) for d in ignored] == [(d.model, d.engine) for d in woke]
    assert detector.ignored_as_own_voice() == []


def test_a_person_saying_the_wake_word_over_an_answer_wakes_it() -> None:
    played = answer("The weather tomorrow is sunny with a light wind from the west, "
                    "and the evening will be mild.", 8.0)
    person = np.zeros(len(played))
    take = loud(espeak("hey jarvis", voice="en-us+m3"), 8000)
    person[int(3.5 * 16000):int(3.5 * 16000) + len(take)] = take
    found, detector = detections(room(residual(played), person), played)
    assert len(found) == 1 and 3.5 < found[0].end_index / 16000 < 6.0
    assert detector.status()["own_voice_ignored"] == 0


def test_nothing_played_costs_no_second_detector_step() -> None:
    """Idle (the played audio silent for long), the played audio is not scored."""
    quiet = np.zeros(16000 * 6, dtype=np.int16)
    detector = WakeDetector(WakeSettings())
    detector.follow_playback(lambda: True, Recorded(quiet))
    inner = detector._own._detector
    calls = []
    inner.process = lambda frame, end: calls.append(end)
    mic = room(quiet.astype(np.float64))
    feed(detector, mic)
    assert calls == []


def played_steps_scored(text: str) -> int:
    """Steps at which the second detector ran its nets on ``text`` played."""
    played = answer(text, 8.0)
    detector = WakeDetector(WakeSettings())
    detector.follow_playback(lambda: True, Recorded(played))
    inner = detector._own._detector
    scored = []
    score = inner._net_scores
    inner._net_scores = lambda *args: scored.append(1) or score(*args)
    mic = room(residual(played))
    feed(detector, mic)
    return len(scored)


def test_the_played_audio_is_scored_only_while_the_microphone_looks() -> None:
    """While the speaker talks and the microphone hears little like the word,
    the second detector's nets are mostly off (its gate waits for the
    microphone's look); an answer naming the word opens them for longer."""
    plain = played_steps_scored("The weather tomorrow is sunny with a light wind from the west.")
    naming = played_steps_scored("You can say hey jarvis at any time to ask me something else.")
    assert plain < 0.1 * 8.0 * 16000 / FRAME and naming > plain, (plain, naming)


class OwnVoiceWake:
    """A detector that heard the speaker's own "hey jarvis" on its first frame."""

    FRAME_SAMPLES = FRAME
    model_names = ("hey_jarvis",)

    def __init__(self) -> None:
        self.ignored = [WakeDetection("hey_jarvis", 0.97, 1000, "openwakeword")]
        self.diagnostics = WakeDiagnostics(0.08)

    def set_playing(self, playing: bool) -> None:
        pass

    def reset(self) -> None:
        pass

    def process(self, frame: np.ndarray, end_index: int) -> None:
        return None

    def ignored_as_own_voice(self) -> list[WakeDetection]:
        ignored, self.ignored = self.ignored, []
        return ignored


def test_the_agent_logs_a_wake_ignored_as_its_own_voice(tmp_path) -> None:
    """The event log's wake_own_voice: what an owner reads when it did not answer."""
    settings = dataclasses.replace(Settings(), service=ServiceSettings(state_dir=str(tmp_path)))

    async def scenario() -> list:
        bus = EventBus()
        events = []
        bus.subscribe(events.append)
        ring = RingBuffer(1.0)
        agent = Agent(settings, bus, ring=ring, player=FakePlayer(), wake=OwnVoiceWake())
        task = asyncio.create_task(agent.run_wake())
        for _ in range(100):  # the microphone, a frame at a time
            await asyncio.sleep(0.01)
            if any(e.name == "wake_own_voice" for e in events):
                break
            ring.write(np.zeros(FRAME, dtype=np.int16))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return events

    events = asyncio.run(scenario())
    own = [e.fields for e in events if e.name == "wake_own_voice"]
    assert own == [{"model": "hey_jarvis", "engine": "openwakeword", "score": 0.97,
                    "end_index": 1000}]
    assert not [e for e in events if e.name in ("wake", "barge_in")]
