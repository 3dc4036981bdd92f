"""wake.phases: openWakeWord's embeddings at other phases of the 80 ms step,
from the same mel frames, scored only while a word is near."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config import WakeSettings, parse_settings
from edge_agent.errors import ConfigError
from edge_agent.tools.rooms import floor_noise
from edge_agent.tools.voices import espeak, noise, silence
from edge_agent.wake import WakeDetector
from edge_agent.wake._features import CHUNK, StreamingFeatures

OWW = ("hey_jarvis", "openwakeword")


def _speech() -> np.ndarray:
    audio = np.concatenate([silence(1.0), espeak("hey jarvis, what time is it", voice="en-gb"),
                            silence(0.5)])
    return np.round(audio + floor_noise(len(audio), seed=5)).astype(np.int16)


def _steps(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i:i + CHUNK] for i in range(0, len(audio) - CHUNK + 1, CHUNK)]


def test_a_phase_is_the_step_of_audio_that_many_mel_frames_later() -> None:
    """Embeddings at phase p are those of the same audio delayed by p mel
    frames (160 samples each), also when asked for only now and then."""
    audio = _speech().astype(np.float32)
    phased = StreamingFeatures(16, (2, 4, 6))
    seen = {}
    for k, chunk in enumerate(_steps(audio)):
        phased.push(chunk)
        phased.embeddings()
        if k % 5 == 4 and k > 25:  # now and then, once the reset state has scrolled out
            seen[k] = {p: phased.embeddings(p).copy() for p in (2, 4, 6)}
    for p in (2, 4, 6):
        delayed = StreamingFeatures(16)
        shifted = np.concatenate([np.zeros(160 * p, np.float32), audio])
        for k, chunk in enumerate(_steps(shifted)):
            delayed.push(chunk)
            if k in seen:
                np.testing.assert_allclose(seen[k][p], delayed.embeddings(), atol=2e-4)


def test_phases_outside_a_step_are_refused() -> None:
    with pytest.raises(ValueError, match="1-7 mel frames"):
        StreamingFeatures(16, (8,))
    with pytest.raises(ConfigError, match=r"wake.phases: expected one of 1, 2, 4, 8 .* got 3"):
        parse_settings({"wake": {"phases": 3}})
    assert parse_settings({"wake": {"phases": 8}}).wake.phases == 8


def _scores(detector: WakeDetector, audio: np.ndarray,
            key: tuple[str, str] = OWW) -> np.ndarray:
    out = []
    for k, chunk in enumerate(_steps(audio)):
        detector.process(chunk, (k + 1) * CHUNK)
        out.append(detector.engine_scores.get(key, 0.0))
    return np.array(out)


def test_each_step_keeps_its_best_phase() -> None:
    """Never below the step's own phase; above it somewhere on a real take."""
    audio = _speech()
    one = _scores(WakeDetector(WakeSettings(phases=1), gate=False), audio)
    four = _scores(WakeDetector(WakeSettings(phases=4), gate=False), audio)
    assert np.all(four >= one - 1e-6)
    assert np.any(four > one + 0.01)


def test_the_seconded_head_scores_at_one_phase() -> None:
    """The heads were trained at one phase; wake.phases is openWakeWord's."""
    head = ("hey_jarvis", "own_head")
    one = _scores(WakeDetector(WakeSettings(phases=1), gate=False), _speech(), head)
    four = _scores(WakeDetector(WakeSettings(phases=4), gate=False), _speech(), head)
    assert one.max() > 0.5
    np.testing.assert_array_equal(one, four)


def test_other_phases_cost_nothing_until_a_score_comes_near(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a noisy room with no word near, one embedding per step, as with
    wake.phases = 1; near the word, the other phases' too."""
    calls = []
    real = StreamingFeatures._embed
    monkeypatch.setattr(StreamingFeatures, "_embed",
                        lambda self, mels: calls.append(1) or real(self, mels))
    detector = WakeDetector(WakeSettings(phases=4), gate=False)
    room = noise(6.0, level=300, seed=3)
    _scores(detector, room[:3 * 16000])  # the start's transient from the reset state
    calls.clear()
    scores = _scores(detector, room[3 * 16000:])
    assert scores.max() < 0.05
    assert len(calls) == len(_steps(room[3 * 16000:]))
    calls.clear()
    _scores(detector, _speech())
    assert len(calls) > 2 * len(_steps(_speech()))
