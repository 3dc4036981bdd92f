"""Echo cancellation on the capture path, driven block by block on the sample
clock as the capture and output threads drive it (no wall-clock bounds)."""

from __future__ import annotations

import numpy as np

from edge_agent.audio.echo import FRAME, EchoCanceller
from edge_agent.audio.ring import RingBuffer
from edge_agent.audio.room import RoomResponse, hear
from tests.speech import espeak, noise, piper, silence

BLOCK = 320
AHEAD = 2
"""The output runs two periods ahead of the capture, like a device's buffer."""
ROOM = RoomResponse(delay_s=0.02)
FAR = np.concatenate([piper("The weather today is mostly sunny with a light breeze "
                            "from the west, and it stays dry until the evening."),
                      piper("Your timer for ten minutes has finished."), silence(0.5)])


def _run(canceller: EchoCanceller, ring: RingBuffer, mic: np.ndarray,
         far: np.ndarray) -> np.ndarray:
    """Capture ``mic`` while ``far`` plays, period by period; the cancelled audio."""
    out = []
    for p in range(0, len(mic) - BLOCK + 1, BLOCK):
        q = p + AHEAD * BLOCK
        period = far[q:q + BLOCK]
        if len(period) == BLOCK:
            canceller.reference.played(period, ring.time_of(q), 16000, 1)
        cleaned = canceller(mic[p:p + BLOCK])
        ring.write(cleaned)
        out.append(cleaned)
    return np.concatenate(out)


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a.astype(float)**2) / (np.sum(b.astype(float)**2) + 1)))


def test_nothing_played_passes_the_microphone_through_untouched() -> None:
    ring = RingBuffer(5.0)
    canceller = EchoCanceller(ring, tail_ms=200, raw_seconds=5.0)
    mic = espeak("hey jarvis")
    out = _run(canceller, ring, mic, np.zeros(0, np.int16))
    assert np.array_equal(out, mic[:len(out)])
    assert canceller.processed == 0 and not canceller.ready


def test_echo_of_speech_is_cancelled_and_the_raw_signal_kept() -> None:
    ring = RingBuffer(30.0)
    canceller = EchoCanceller(ring, tail_ms=200, raw_seconds=30.0)
    mic = hear(FAR, noise(len(FAR) / 16000, level=20), ROOM)
    out = _run(canceller, ring, mic, FAR)
    late = slice(len(out) - 3 * 16000, len(out) - 8000)  # the last sentence
    assert _db(mic[late], out[late]) > 20.0
    assert canceller.ready and canceller.diverged == 0
    raw = canceller.raw.read_range(0, len(out))
    assert np.array_equal(raw, mic[:len(out)])
    # Long after the last sound, blocks pass through again.
    processed = canceller.processed
    quiet = noise(1.0, level=20, seed=3)
    assert np.array_equal(_run(canceller, ring, quiet, np.zeros(0, np.int16)), quiet)
    assert canceller.processed == processed


def test_near_talker_survives_cancellation_during_playback() -> None:
    ring = RingBuffer(30.0)
    canceller = EchoCanceller(ring, tail_ms=200, raw_seconds=30.0)
    talk = espeak("hey jarvis, what time is it")
    near = np.zeros(len(FAR), np.int16)
    at = len(FAR) - len(talk) - 8000
    near[at:at + len(talk)] = talk
    mic = hear(FAR, near, ROOM)
    out = _run(canceller, ring, mic, FAR)
    span = slice(at, at + len(talk))
    echo_before = mic[span].astype(float) - near[span]
    echo_after = out[span].astype(float) - near[span]
    assert _db(near[span], echo_after) > _db(near[span], echo_before) + 6.0


def test_a_diverging_filter_is_reset_and_no_longer_trusted() -> None:
    made = []

    def amplifier(frame: int, tail_ms: int):
        made.append(frame)
        return lambda near, far: np.clip(near.astype(np.int32) * 2, -32768,
                                         32767).astype(np.int16)

    ring = RingBuffer(30.0)
    canceller = EchoCanceller(ring, tail_ms=200, raw_seconds=30.0, engine=amplifier)
    canceller.converged = True  # as if it had converged before
    far = noise(4.0, level=3000)
    _run(canceller, ring, hear(far, np.zeros(len(far), np.int16), ROOM), far)
    assert canceller.diverged >= 1 and not canceller.ready
    assert made == [FRAME] * (1 + canceller.diverged)
