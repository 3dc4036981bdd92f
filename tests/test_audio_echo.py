"""Echo cancellation on the capture path, driven block by block on the sample
clock as the capture and output threads drive it (no wall-clock bounds)."""

from __future__ import annotations

import time

import numpy as np

from edge_agent.audio.capture import Microphone
from edge_agent.audio.echo import FRAME, EchoCanceller
from edge_agent.audio.ring import RingBuffer
from edge_agent.audio.room import RoomResponse, hear
from edge_agent.events import EventBus
from edge_agent.tools.voices import espeak, noise, piper, silence

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


def test_reference_from_a_stereo_48k_device_lands_on_the_capture_clock() -> None:
    ring = RingBuffer(5.0)
    ring.write(np.zeros(16000, np.int16))
    reference = EchoCanceller(ring, tail_ms=200, raw_seconds=1.0).reference
    tone = (np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 8000).astype(np.int16)
    for i in range(0, 48000, 960):  # 20 ms periods, both channels the same
        period = np.repeat(tone[i:i + 960], 2)
        reference.played(period, ring.time_of(20000 + i // 3), 48000, 2)
    got = reference.take(20000 - 320, 16000)  # placed LEAD (20 ms) early
    assert reference.reanchors == 0
    # The resampler's own delay is a few samples: the tone's power is all there.
    assert np.std(got[1000:15000]) > 0.9 * 8000 / np.sqrt(2)


def test_a_late_period_is_jitter_but_a_lasting_shift_moves_the_reference() -> None:
    ring = RingBuffer(5.0)
    ring.write(np.zeros(16000, np.int16))
    reference = EchoCanceller(ring, tail_ms=200, raw_seconds=1.0).reference
    period = np.full(320, 1000, np.int16)
    at = 20000
    for k in range(20):
        late = 800 if k == 5 else 0  # one period handed over 50 ms late
        reference.played(period, ring.time_of(at + 320 * k + late), 16000, 1)
    assert reference.reanchors == 0
    for k in range(20, 40):  # the output stalled for 200 ms, then went on
        reference.played(period, ring.time_of(at + 320 * k + 3200), 16000, 1)
    assert reference.reanchors == 1
    assert reference.written_until == at - 320 + 320 * 40 + 3200


def test_samples_held_for_their_reference_keep_the_time_they_were_captured() -> None:
    """The ring's clock places the reference: if a block waiting for its
    reference were stamped when released, the clock would move with the hold,
    and the reference with it (it was placed up to 60 ms late, the echo left
    uncancelled, on a loaded machine)."""
    ring = RingBuffer(5.0)
    canceller = EchoCanceller(ring, tail_ms=200, raw_seconds=1.0)
    microphone = Microphone("unused.wav", ring, EventBus(), canceller=canceller)
    ring.write(np.zeros(16000, np.int16))
    canceller.reference.played(np.full(320, 1000, np.int16), time.monotonic(), 16000, 1)
    before = time.monotonic()
    microphone._write(np.zeros(3200, np.int16))
    after = time.monotonic()
    held = canceller.held
    assert held > 0 and ring.total == 16000 + 3200 - held
    stamped = ring.time_of(ring.total - 1)
    assert before - held / 16000 <= stamped <= after - held / 16000
