"""The daemon in a room that hears itself (.wav devices joined by the test
room): the echo is there without cancellation, and gone with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.audio.echolink import EchoLink
from edge_agent.audio.ring import RingBuffer
from edge_agent.config import AudioSettings, EchoSettings
from edge_agent.testbed.echo_room import (
    ANSWER,
    correlation,
    room,
    speech_24k,
    voice_barge_in,
)
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.harness import Harness, run
from edge_agent.tools.voices import silence


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a.astype(float)**2) / (np.sum(b.astype(float)**2) + 1)))


async def _speak_in_room(tmp: Path, cancel: bool, answers: int) -> tuple[Harness, int]:
    """Speak ANSWER ``answers`` times in the room; the ring index where the last began."""
    with FakeCloud(speech=speech_24k) as fake:
        harness = Harness(tmp, fake, silence(1.0), extra=room(cancel))
        async with harness as h:
            for _ in range(answers):
                start = h.daemon.ring.total
                await h.daemon.agent.say(ANSWER)
            await h.at_input_second(h.daemon.ring.total / 16000 + 0.5)
            h.captured = h.daemon.ring.read_range(start, h.daemon.ring.total)
            canceller = h.daemon.echo.canceller
            h.raw = (canceller.raw.read_range(start, h.daemon.ring.total)
                     if canceller is not None else None)
            h.ready = h.daemon.echo.ready()
            h.status = h.daemon.agent.status()["echo"]
    return harness, start


def test_without_cancellation_the_microphone_hears_the_answer(tmp_path: Path) -> None:
    h, _ = run(_speak_in_room(tmp_path, cancel=False, answers=1))
    played = h.output()
    assert correlation(h.captured, played) > 0.8
    assert _db(h.captured, silence(0.01)) > 60  # far above the silent input file


def test_cancellation_removes_the_echo_and_keeps_the_raw_microphone(tmp_path: Path) -> None:
    h, _ = run(_speak_in_room(tmp_path, cancel=True, answers=2), timeout=180)
    assert h.ready
    assert h.status["cancelling"] and h.status["converged"] and not h.status["diverged"]
    assert h.status["test_room_delay_ms"] == 20.0
    # The raw microphone still hears the last answer (the output holds two: 1/√2 at most).
    assert correlation(h.raw, h.output()) > 0.6
    assert _db(h.raw, h.captured) > 20.0, h.status


def test_a_canceller_that_cannot_load_leaves_the_speaker_working(monkeypatch) -> None:
    monkeypatch.setenv("SPEEXDSP_LIB", "/nonexistent/libspeexdsp.so")
    import ctypes.util
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(ctypes, "CDLL", _no_library)
    link = EchoLink.build(EchoSettings(), AudioSettings(), RingBuffer(1.0))
    assert link.canceller is None and not link.ready()


def _no_library(*args: object, **kwargs: object) -> None:
    raise OSError("no such library")


def test_saying_the_wake_word_during_an_answer_interrupts_it(tmp_path: Path) -> None:
    figures = run(voice_barge_in(tmp_path), timeout=180)
    assert figures["question_correlation"] > 0.9  # the whole question, not a piece
    assert figures["uploaded_seconds"] >= figures["question_seconds"]
