"""The self-hearing room: the echo of what plays lands at a fixed place on the
capture clock, with the room's delay and gain."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_agent.audio.room import EchoPath, Room, RoomResponse, hear
from edge_agent.tools.voices import piper, silence

DRY = RoomResponse(delay_s=0.02, rt60_s=0.0)
"""A room without reverberation: the echo is the played signal, 320 samples late."""


def _click(n: int, at: int, value: int = 10000) -> np.ndarray:
    out = np.zeros(n, dtype=np.int16)
    out[at] = value
    return out


def test_echo_of_a_click_comes_after_the_delay_at_the_gain() -> None:
    heard = hear(_click(2000, 100), np.zeros(2000, np.int16),
                 RoomResponse(delay_s=0.02, gain_db=-6.0, rt60_s=0.0))
    assert int(np.argmax(np.abs(heard))) == 100 + 320
    assert heard[420] == pytest.approx(10000 * 10 ** (-6 / 20), abs=1)


def test_reverberant_room_adds_a_decaying_tail_below_the_direct_sound() -> None:
    ir = RoomResponse(delay_s=0.005, rt60_s=0.2, reverb_db=-10.0).impulse()
    direct, tail = ir[80], ir[81:]
    assert direct == 1.0 and not ir[:80].any()
    assert 10 * np.log10(np.sum(tail**2)) == pytest.approx(-10.0, abs=0.01)
    assert np.sum(tail[:1600]**2) > 10 * np.sum(tail[1600:]**2)  # decays


def test_streaming_echo_matches_the_whole_file() -> None:
    played = piper("The weather today is sunny.")[:16000]
    room = RoomResponse(delay_s=0.03)
    whole = hear(played, np.zeros(len(played), np.int16), room)
    path = EchoPath(room)
    blocks = [path(played[i:i + 320]) for i in range(0, len(played), 320)]
    streamed = np.clip(np.round(np.concatenate(blocks)), -32768, 32767).astype(np.int16)
    assert np.max(np.abs(streamed.astype(int) - whole)) <= 1


@pytest.mark.timeout(30)
def test_room_joins_output_and_input_threads_on_one_sample_clock() -> None:
    """Output and capture threads run unevenly; the echo still lands exactly."""
    room = Room(DRY, wait_seconds=10.0)  # a loaded machine may start a thread late
    played = np.concatenate([silence(0.1), _click(320 * 10, 1000), silence(0.2)])
    blocks = len(played) // 320
    heard: list[np.ndarray] = []
    joined = threading.Event()

    def output() -> None:
        for i in range(1, blocks):
            room.played(played[i * 320:(i + 1) * 320])

    def capture() -> None:
        for _ in range(blocks):
            heard.append(room.heard(np.zeros(320, np.int16)))
            joined.set()

    room.played(played[:320])  # the output was already running
    cap = threading.Thread(target=capture)
    cap.start()
    assert joined.wait(10)  # the capture's first block heard the period played last
    out = threading.Thread(target=output)
    out.start()
    out.join(10)
    cap.join(10)
    mic = np.concatenate(heard)
    assert len(mic) == len(played)
    assert int(np.argmax(np.abs(mic))) == 1600 + 1000 + 320


def test_capture_without_output_does_not_wait() -> None:
    room = Room(DRY)
    block = np.full(320, 7, np.int16)
    assert np.array_equal(room.heard(block), block)
