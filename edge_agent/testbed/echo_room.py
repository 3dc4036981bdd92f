"""The daemon in a room that hears itself (.wav devices joined by the test
room, ``echo.room_delay_ms``), and a user who says the wake word and a question
while the speaker answers: the voice barge-in, for the tests and bench echo."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np
import soxr

from edge_agent.testbed.fakecloud import TTS_RATE, FakeCloud
from edge_agent.testbed.harness import NO_EARCONS, Harness
from edge_agent.tools.voices import piper, silence
from edge_agent.tools.wake_eval import FAMILIES

ANSWER = ("The weather today is mostly sunny with a light breeze from the west. "
          "Tomorrow morning expect rain showers, clearing in the afternoon.")


def speech_24k(text: str) -> np.ndarray:
    return soxr.resample(piper(text), 16000, TTS_RATE).astype(np.int16)


def room(cancel: bool) -> str:
    return NO_EARCONS + f"[echo]\ncancel = {str(cancel).lower()}\nroom_delay_ms = 20.0\n"


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Peak normalised cross-correlation of two signals at any lag."""
    n = len(x) + len(y)
    size = 1 << (n - 1).bit_length()
    xf, yf = x.astype(float), y.astype(float)
    cc = np.fft.irfft(np.fft.rfft(xf, size) * np.conj(np.fft.rfft(yf, size)), size)
    return float(np.max(np.abs(cc)) / np.sqrt(np.sum(xf**2) * np.sum(yf**2)))


WAKE_AT = (24.0, 34.0)
"""Seconds into the input when the user says the wake word and the question, and
says them again 10 s later if the speaker went on talking, as people do: one
take of one voice is missed now and then (about 3 % while playing and idle alike
in the echo bench), and what is tested here is the interruption. The input plays
from the microphone's start, the answer from READY, which a loaded machine may
reach 10 s later: the canceller has still heard over 10 s of the answer by then,
and the five answers play for about 45 s."""
COMMAND = "what time is it in Tokyo"


def user(text: str) -> np.ndarray:
    """The user: a CMU voice (held out for every wake engine), at the level of
    the speaker's own voice in the room (0 dB)."""
    audio = FAMILIES["cmu"]["flite:slt@1.0"](text).astype(np.float64)
    level = 0.8 * np.sqrt(np.mean(piper(ANSWER).astype(np.float64) ** 2))  # the volume
    loud = audio[np.abs(audio) > 0.05 * np.abs(audio).max()]
    return np.clip(audio * level / np.sqrt(np.mean(loud**2)), -32768, 32767).astype(np.int16)


async def voice_barge_in(tmp: Path) -> dict[str, float]:
    """The user says "hey jarvis" and a question while the speaker answers, in
    the self-hearing room with cancellation. Figures: which attempt was heard,
    from the end of that wake word to silence at the speaker (the barge-in, plus
    the stop latency the player measured), and how much of the question the STT
    request correlates with."""
    wake, command = user("hey jarvis"), user(COMMAND)
    spoken = np.flatnonzero(np.abs(wake.astype(np.int32)) > 0.05 * np.abs(wake).max())
    # Where each wake word ends (the synthesizer's tail is silence).
    wake_ends = [int(at * 16000) + int(spoken[-1]) + 1 for at in WAKE_AT]
    parts, length = [], 0
    for at in WAKE_AT:
        parts += [silence(at - length / 16000), wake, silence(0.15), command]
        length = sum(len(p) for p in parts)
    audio = np.concatenate([*parts, silence(4.0)])
    uploads: list[np.ndarray] = []

    def transcript(samples: np.ndarray) -> str:
        uploads.append(samples)
        return COMMAND

    with FakeCloud(speech=speech_24k, transcript=transcript) as fake:
        async with Harness(tmp, fake, audio, extra=room(True)) as h:
            say = asyncio.create_task(h.daemon.agent.say(" ".join([ANSWER] * 5)))
            try:
                barge = await h.wait_event("barge_in", within=75)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; wake: {h.daemon.agent.status()['wake']}; "
                                     f"echo: {h.daemon.echo.status()}") from None
            heard_at = h.daemon.ring.total
            attempt = max(k for k, end in enumerate(wake_ends) if end <= heard_at)
            wake_end = wake_ends[attempt]
            await h.at_input_second(wake_end / 16000 + 0.1)
            wake_end_t = h.daemon.ring.time_of(wake_end)
            silent_at = barge.t + (h.daemon.player.last_stop_latency or 0.0)
            await h.wait_event("utterance", within=30)
            await asyncio.to_thread(fake.wait_for_request, "stt", 1, 30)
            with contextlib.suppress(asyncio.CancelledError):
                await say
    return {"attempt": attempt + 1,
            "wake_end_to_silence_ms": round((silent_at - wake_end_t) * 1000, 1),
            "question_correlation": round(correlation(uploads[0], command), 3),
            "question_seconds": round(len(command) / 16000, 2),
            "uploaded_seconds": round(len(uploads[0]) / 16000, 2)}


class Recorded:
    """What the speaker played, a whole recording on the capture clock: the
    echo reference (audio.echo.EchoReference) of an offline run, which keeps
    only seconds."""

    def __init__(self, played: np.ndarray) -> None:
        self.played = played
        voiced = np.flatnonzero(played)
        self.sound_end = int(voiced[-1]) + 1 if len(voiced) else -(1 << 62)  # as the real one

    def take(self, start: int, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        part = self.played[max(0, start):start + n]
        out[max(0, -start):max(0, -start) + len(part)] = part
        return out
