"""Echo benchmark: the speaker in a room that hears itself (edge_agent/audio/room.py:
echo 20 ms late, direct sound at 0 dB, RT60 0.15 s, -64 dBFS noise floor), its
answers read by Piper's joe voice (the daemon's own offline voice), some of
them naming the wake word, and music-like chords between them.

The canceller is the daemon's own (EchoCanceller: the reference goes through
EchoReference.played on the ring's sample clock, two output periods ahead of
the capture as a device buffer would be), the wake word the shipped detector.

- ``erle_db``: echo return loss enhancement (raw / cancelled energy) over 0.5 s
  windows with echo, median after the first 10 s of playback (no near talker);
  ``converge_s``: playback time until a window first comes within 3 dB of it;
  ``to_25_db_s``: until a window first reaches 25 dB.
- ``cpu_per_audio_s``: the canceller's CPU while playing; ``cpu_per_audio_s_idle``
  while nothing plays (the bypass).
- ``wake_miss_rate_playing`` / ``wake_miss_rate_idle``: "hey jarvis" takes said at
  0 dB against the echo while the speaker talks (cancelled, normal threshold
  once converged) and the same takes in silence. Voices: the CMU family (flite
  and festival voices built from recorded speakers) and espeak-ng, held out for
  the shipped engines (openWakeWord and microWakeWord, trained by others on
  none of our data). ``wake_miss_rate_playing_without_cancellation``: today's
  fallback (raised wake.playback_threshold) on the same takes.
  ``wake_playing_ignored_as_own_voice``: detections while playing that the
  played audio's own wake word explained (wake/_own_voice.py).
- ``self_wakes_per_hour`` over ``self_hours``: detections on the cancelled
  microphone while the speaker talks and plays music alone; also without
  cancellation at the normal and at the raised threshold.
  ``self_wakes_ignored_as_own_voice``: those the own-voice check removed.
- ``wake_cpu_per_audio_s_playing``: the wake word's CPU over the answers'
  cancelled microphone, without and with the own-voice check.
- ``voice_barge_in``: the daemon in the self-hearing room with cancellation; the
  user (a CMU voice, at the speaker's level) says "hey jarvis" and a question
  during an answer (and again 10 s later if it was not heard): from the end of
  the wake word heard to silence at the speaker, how many runs heard the first
  attempt, and the question's correlation with what the STT request carried.
- ``candidates``: the same ERLE, convergence, CPU and the near talker's
  signal-to-echo ratio before and after, for each AEC binding installed
  (speexdsp-aec: the one shipped; pyaec: pip install pyaec to compare).

    python -m edge_agent.bench.echo [--quick] [--out docs/bench-echo.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.audio.echo import FRAME, EchoCanceller
from edge_agent.audio.ring import RingBuffer
from edge_agent.audio.room import RoomResponse, hear
from edge_agent.benchmark import conditions
from edge_agent.config import WakeSettings
from edge_agent.tools.rooms import floor_noise
from edge_agent.tools.voices import RATE, piper, silence
from edge_agent.tools.wake_eval import COMMANDS, FAMILIES, read_speech_corpus
from edge_agent.wake import WakeDetector

ROOM = RoomResponse(delay_s=0.02, gain_db=0.0, rt60_s=0.15)
BLOCK = 320
"""The capture period (20 ms)."""
AHEAD = 2
"""Output periods handed over before the capture hears them (a device's buffer)."""
WINDOW = RATE // 2
SELF_NAMING = "You can say hey jarvis at any time to ask me something else."
"""An answer naming the wake word: without cancellation it wakes the speaker."""
MUSIC_SHARE = 0.2


def music(seconds: float, seed: int) -> np.ndarray:
    """Music-like audio: a chord progression of harmonic tones with a beat."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n)
    beat = int(0.5 * RATE)
    for start in range(0, n, 4 * beat):
        root = 110 * 2 ** (rng.integers(0, 12) / 12)
        seg = slice(start, min(n, start + 4 * beat))
        for ratio in (1.0, 1.26, 1.5, 2.0):
            for harmonic in (1, 2, 3):
                out[seg] += np.sin(2 * np.pi * root * ratio * harmonic * t[seg]) / harmonic
    envelope = 0.3 + 0.7 * np.exp(-((np.arange(n) % beat) / RATE) / 0.15)
    out *= envelope
    return (out / np.abs(out).max() * 12000).astype(np.int16)


def answers(seconds: float, corpus: list[str], seed: int = 5) -> np.ndarray:
    """``seconds`` of the speaker's own output: Piper reading sentences (every
    fifth names the wake word), music-like stretches, short pauses."""
    rng = np.random.default_rng(seed)
    pieces, total, i = [], 0, 0
    while total < seconds * RATE:
        if rng.random() < MUSIC_SHARE:
            piece = music(float(rng.uniform(4, 10)), seed=i)
        else:
            text = SELF_NAMING if i % 5 == 4 else corpus[(seed * 997 + i) % len(corpus)]
            piece = piper(text)
        pause = silence(float(rng.uniform(0.2, 0.6)))
        pieces += [piece, pause]
        total += len(piece) + len(pause)
        i += 1
    return np.concatenate(pieces)[:int(seconds * RATE)]


class Session:
    """One pass of the capture path: the room's microphone through the canceller,
    the reference handed over period by period on the ring's clock."""

    def __init__(self) -> None:
        self.ring = RingBuffer(60.0)
        self.canceller = EchoCanceller(self.ring, tail_ms=200, raw_seconds=1.0)
        self.cpu = 0.0

    def run(self, mic: np.ndarray, far: np.ndarray,
            each_block: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
        out = np.zeros(len(mic), np.int16)
        filled = 0
        ring, canceller = self.ring, self.canceller
        for p in range(0, len(mic) - BLOCK + 1, BLOCK):
            q = p + AHEAD * BLOCK
            started = time.process_time()
            if q + BLOCK <= len(far):
                canceller.reference.played(far[q:q + BLOCK], ring.time_of(q), RATE, 1)
            cleaned = canceller(mic[p:p + BLOCK])
            self.cpu += time.process_time() - started
            ring.write(cleaned)
            out[filled:filled + len(cleaned)] = cleaned
            filled += len(cleaned)
            if each_block is not None:
                each_block(filled, cleaned)
        return out[:filled]


def _windows_db(mic: np.ndarray, out: np.ndarray, echo: np.ndarray) -> list[tuple[float, float]]:
    """(start s, ERLE dB) per 0.5 s window holding echo (above -50 dBFS)."""
    found = []
    for s in range(0, min(len(out), len(mic)) - WINDOW + 1, WINDOW):
        e = echo[s:s + WINDOW].astype(np.float64)
        if np.mean(e**2) < 1e4:
            continue
        m, o = mic[s:s + WINDOW].astype(np.float64), out[s:s + WINDOW].astype(np.float64)
        found.append((s / RATE, float(10 * np.log10(np.sum(m**2) / (np.sum(o**2) + 1.0)))))
    return found


def erle_figures(mic: np.ndarray, out: np.ndarray, echo: np.ndarray) -> dict[str, Any]:
    windows = _windows_db(mic, out, echo)
    late = [db for t, db in windows if t >= 10.0]
    erle = float(np.median(late))
    converge = next(t + WINDOW / RATE for t, db in windows if db >= erle - 3.0)
    to_25 = next((t + WINDOW / RATE for t, db in windows if db >= 25.0), None)
    return {"erle_db": round(erle, 1), "converge_s": round(converge, 1),
            "to_25_db_s": to_25 and round(to_25, 1)}


def echo_signals(far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(microphone, echo alone) for ``far`` played in the room over the noise floor."""
    echo = hear(far, np.zeros(len(far), np.int16), ROOM)
    floor = floor_noise(len(far), seed=1)
    mic = np.clip(np.round(echo + floor), -32768, 32767).astype(np.int16)
    return mic, echo


def cancellation_figures(far: np.ndarray) -> dict[str, Any]:
    mic, echo = echo_signals(far)
    session = Session()
    out = session.run(mic, far)
    played_s = len(mic) / RATE
    idle = Session()
    quiet = floor_noise(len(mic), seed=2).astype(np.int16)
    idle.run(quiet, np.zeros(0, np.int16))
    return {**erle_figures(mic, out, echo),
            "cpu_per_audio_s": round(session.cpu / played_s, 4),
            "cpu_per_audio_s_idle": round(idle.cpu / played_s, 5),
            "audio_s": round(played_s, 1)}


# --- the wake word while the speaker talks ------------------------------------------------

HELD_OUT = ("cmu", "espeak")


def wake_takes() -> list[tuple[str, str, np.ndarray]]:
    """(family, voice, audio) of "hey jarvis" with a command, held-out families."""
    found = []
    for family in HELD_OUT:
        for i, (label, voice) in enumerate(FAMILIES[family].items()):
            for text in ("hey jarvis", f"hey jarvis, {COMMANDS[i % len(COMMANDS)]}"):
                found.append((family, label, voice(text)))
    return found


def _rms(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    loud = x[np.abs(x) > 0.05 * np.abs(x).max()]
    return float(np.sqrt(np.mean(loud**2)))


class Detections:
    """The shipped detector following the ring block by block, like the wake task."""

    def __init__(self, session: Session | None, playing: bool) -> None:
        self.detector = WakeDetector(WakeSettings())
        self.detector.set_playing(playing)
        if session is not None:
            canceller = session.canceller
            self.detector.follow_playback(lambda: canceller.ready, canceller.reference)
        self.ends: list[int] = []

    def feed(self, total: int, block: np.ndarray) -> None:
        found = self.detector.process(block, total)
        if found is not None:
            self.ends.append(found.end_index)


def wake_figures(far: np.ndarray, takes: list[tuple[str, str, np.ndarray]],
                 warmup_s: float = 12.0, spacing_s: float = 5.0) -> dict[str, Any]:
    """Each take said over the speaker's answer (cancelled, then not) and in silence."""
    echo_rms = _rms(hear(far[:RATE * 20], np.zeros(RATE * 20, np.int16), ROOM))
    spacing = int(spacing_s * RATE)
    n = int(warmup_s * RATE) + spacing * len(takes)
    far = np.resize(far, n)
    near = floor_noise(n, seed=3)
    spans = []
    for k, (_, _, audio) in enumerate(takes):
        at = int(warmup_s * RATE) + k * spacing
        scaled = audio.astype(np.float64) * echo_rms / _rms(audio)
        near[at:at + len(audio)] += scaled
        spans.append((at, at + len(audio) + RATE))
    near16 = np.clip(np.round(near), -32768, 32767).astype(np.int16)
    playing_mic = hear(far, near16, ROOM)

    def misses(ends: list[int]) -> list[bool]:
        return [not any(a <= e <= b for e in ends) for a, b in spans]

    session = Session()
    cancelled = Detections(session, playing=True)
    session.run(playing_mic, far, cancelled.feed)
    fallback = Detections(None, playing=True)
    idle = Detections(None, playing=False)
    for p in range(0, n - BLOCK + 1, BLOCK):
        fallback.feed(p + BLOCK, playing_mic[p:p + BLOCK])
        idle.feed(p + BLOCK, near16[p:p + BLOCK])

    def by_family(missed: list[bool]) -> dict[str, float]:
        rates = {f: round(float(np.mean([m for m, t in zip(missed, takes, strict=True)
                                         if t[0] == f])), 3) for f in HELD_OUT}
        return {"all": round(float(np.mean(missed)), 3), **rates}

    return {"wake_miss_rate_playing": by_family(misses(cancelled.ends)),
            "wake_miss_rate_idle": by_family(misses(idle.ends)),
            "wake_miss_rate_playing_without_cancellation": by_family(misses(fallback.ends)),
            "wake_takes": len(takes), "held_out_families": list(HELD_OUT),
            "wake_playing_ignored_as_own_voice": cancelled.detector.status()["own_voice_ignored"],
            "echo_to_talker_db": 0.0}


def self_wake_figures(far: np.ndarray) -> dict[str, Any]:
    """Wake detections while the speaker talks alone, with and without cancellation."""
    mic, _ = echo_signals(far)
    session = Session()
    cancelled = Detections(session, playing=True)
    session.run(mic, far, cancelled.feed)
    hours = len(mic) / RATE / 3600
    raw = {"normal": Detections(None, playing=False), "raised": Detections(None, playing=True)}
    for p in range(0, len(mic) - BLOCK + 1, BLOCK):
        for d in raw.values():
            d.feed(p + BLOCK, mic[p:p + BLOCK])
    return {"self_wakes_per_hour": round(len(cancelled.ends) / hours, 2),
            "self_wakes": len(cancelled.ends), "self_hours": round(hours, 3),
            "self_wakes_ignored_as_own_voice": cancelled.detector.status()["own_voice_ignored"],
            "self_wakes_per_hour_without_cancellation": {
                "threshold_normal": round(len(raw["normal"].ends) / hours, 2),
                "threshold_raised_while_playing": round(len(raw["raised"].ends) / hours, 2)},
            "canceller_diverged": session.canceller.diverged}


def playing_wake_cpu(far: np.ndarray) -> dict[str, float]:
    """The wake word's CPU s per audio s while the speaker talks alone (cancelled,
    converged), without and with the own-voice check (wake/_own_voice.py)."""
    from edge_agent.testbed.echo_room import Recorded

    mic, _ = echo_signals(far)
    cleaned = Session().run(mic, far)
    seconds = len(cleaned) / RATE
    cpu = {}
    for label, played in (("without_own_voice", None), ("with_own_voice", Recorded(far))):
        detector = WakeDetector(WakeSettings())
        detector.set_playing(True)
        detector.follow_playback(lambda: True, played)
        started = time.process_time()
        for p in range(0, len(cleaned) - BLOCK + 1, BLOCK):
            detector.process(cleaned[p:p + BLOCK], p + BLOCK)
        cpu[label] = round((time.process_time() - started) / seconds, 5)
    return cpu


# --- candidate bindings -------------------------------------------------------------------

def _speexdsp_aec(tail_ms: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from speexdsp_aec import SpeexAec
    aec = SpeexAec(RATE, FRAME * 1000 // RATE, tail_ms)
    return lambda near, far: np.frombuffer(aec.process(near, far), dtype=np.int16)


def _pyaec(tail_ms: int, preprocess: bool) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import pyaec
    aec = pyaec.Aec(FRAME, tail_ms * RATE // 1000, RATE, preprocess)
    return lambda near, far: np.concatenate([
        np.asarray(aec.cancel_echo(near[i:i + FRAME].tolist(), far[i:i + FRAME].tolist()),
                   dtype=np.int16) for i in range(0, len(near), FRAME)])


CANDIDATES: dict[str, Callable[[], Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "speexdsp-aec 0.1.0 (libspeexdsp), 10 ms frames, 200 ms tail": lambda: _speexdsp_aec(200),
    "pyaec 1.0.1, 10 ms frames, 200 ms tail": lambda: _pyaec(200, False),
    "pyaec 1.0.1, 10 ms frames, 200 ms tail, its preprocessor on": lambda: _pyaec(200, True),
}


def candidate_figures(far: np.ndarray, talker: np.ndarray) -> dict[str, Any]:
    """Each binding on the same room, the near talker at 0 dB in the last quarter."""
    mic_echo, echo = echo_signals(far)
    near = np.zeros(len(far))
    at = len(far) * 3 // 4
    scaled = talker.astype(np.float64) * _rms(echo) / _rms(talker)
    near[at:at + len(talker)] = scaled
    mic = np.clip(np.round(mic_echo + near), -32768, 32767).astype(np.int16)
    span = slice(at, at + len(talker))
    found: dict[str, Any] = {}
    for name, make in CANDIDATES.items():
        try:
            aec = make()
        except (ImportError, OSError, RuntimeError) as exc:
            found[name] = {"error": f"not installed: {exc}"}
            continue
        started = time.process_time()
        out = np.concatenate([aec(mic[i:i + FRAME], far[i:i + FRAME])
                              for i in range(0, len(mic) - FRAME + 1, FRAME)])
        cpu = time.process_time() - started
        before = near[span] - mic[span]
        after = near[span] - out[span]
        found[name] = {**erle_figures(mic[:at], out[:at], echo[:at]),
                       "cpu_per_audio_s": round(cpu / (len(mic) / RATE), 4),
                       "talker_to_echo_db_before": round(_ratio_db(near[span], before), 1),
                       "talker_to_echo_db_after": round(_ratio_db(near[span], after), 1)}
    return found


def _ratio_db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a**2) / (np.sum(b.astype(np.float64)**2) + 1.0)))


def voice_barge_in_figures(runs: int) -> dict[str, Any]:
    import asyncio
    import tempfile

    from edge_agent.testbed.echo_room import voice_barge_in

    found = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            found.append(asyncio.run(asyncio.wait_for(voice_barge_in(Path(tmp)), 180)))
    latency = [f["wake_end_to_silence_ms"] for f in found]
    return {"wake_end_to_silence_ms": {"median": float(np.median(latency)),
                                       "worst": float(max(latency))},
            "question_correlation_min": min(f["question_correlation"] for f in found),
            "heard_at_the_first_attempt": sum(f["attempt"] == 1 for f in found),
            "runs": found}


def run(quick: bool = False) -> dict[str, Any]:
    corpus = read_speech_corpus()
    self_seconds = 180.0 if quick else 1800.0
    far = answers(60.0 if quick else 120.0, corpus)
    talker = FAMILIES["cmu"]["flite:slt@1.0"]("hey jarvis, what time is it in Tokyo")
    takes = wake_takes()
    if quick:
        takes = takes[::3]
    started = time.monotonic()
    report: dict[str, Any] = {
        **cancellation_figures(far),
        **wake_figures(far, takes),
        **self_wake_figures(answers(self_seconds, corpus, seed=11)),
        "wake_cpu_per_audio_s_playing": playing_wake_cpu(far),
        "voice_barge_in": voice_barge_in_figures(1 if quick else 5),
        "candidates": candidate_figures(far, talker),
        "conditions": {"room": {"delay_s": ROOM.delay_s, "gain_db": ROOM.gain_db,
                                "rt60_s": ROOM.rt60_s, "reverb_db": ROOM.reverb_db},
                       "noise_floor_dbfs": -64, "speaker_voice": "piper joe (the daemon's own)",
                       "music_share": MUSIC_SHARE, "engine": "speexdsp-aec (libspeexdsp)",
                       "wake": "shipped detector (openwakeword or microwakeword, 0.5, and "
                               "the seconded head; wake.playback_threshold 0.8 as the "
                               "fallback)"},
    }
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    began = conditions()  # the machine and its load before the run
    report = run(quick=args.quick)
    report["conditions"] |= {"machine": began["machine"],
                             "load_average_at_start": began["load_average_at_start"],
                             "how": "python -m edge_agent.bench.echo"
                                    + (" --quick" if args.quick else "")}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
