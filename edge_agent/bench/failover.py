"""Failover as the listener hears it: for each fault of the fake cloud at each
stage, the time from the fault to the first audio of the fallback, and the
longest silence heard after the fault.

The output is the real-time .wav speaker, read back as a timeline. The fake
cloud's voice is a 440 Hz tone, its notices ("Sorry, I lost my connection", the
apology, the offline help) a 660 Hz tone, and Piper is speech; so "fallback audio" is any
sound after the fault that is not the 440 Hz answer voice.

Figures per case: ``detect_ms`` (fault -> failover event: the timeout for
stalls), ``to_fallback_audio_ms`` (fault -> first fallback frame at the
device), ``after_detect_ms`` (failover event -> that frame: what the pipeline
itself costs), ``longest_silence_ms`` (after the fault, until the answer ends),
``unexplained_silence_ms`` (the same, but a wait announced by "One moment."
(Vosk decoding, or a stage silent for 1.2 s) counts only up to the notice).
Stalls run a second time with the shipped (default) timeouts.
The fault moment is when the failing request reached the server (for a refused
connection: when it was refused). Stalls use the small timeouts listed. STT
faults run twice: offline.stt_mode "fallback" (Vosk decodes the utterance after
the failure) and "parallel" (Vosk's result is ready at the end of speech).

    python -m edge_agent.bench.failover [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.agent.turn import CLOUD_TROUBLE, LOST_CONNECTION, ONE_MOMENT
from edge_agent.config import CloudTimeouts
from edge_agent.testbed.fakecloud import TTS_RATE, FakeCloud, tone
from edge_agent.testbed.fault_cases import CASES, REPLY
from edge_agent.testbed.rig import FAST_TIMEOUTS, LOUD, Rig, make_rig, question, vosk_engine
from edge_agent.tools.voices import RATE

WINDOW = 320  # 20 ms of the 16 kHz output: two ticks of its 10 ms clock
# Stalls again with the shipped timeouts (seconds): the wait notice must cover them.
DEFAULT_TIMEOUTS = dataclasses.asdict(CloudTimeouts())
DEFAULT_STALLS = [(stage, kind, {"after": 2} if kind == "stall_mid" and stage != "stt" else {})
                  for stage in ("stt", "llm", "tts") for kind in ("stall_first", "stall_mid")]
QUICK_STALLS = [("stt", "stall_first", {}), ("llm", "stall_first", {})]
QUICK = [("stt", "status", {"status": 503}), ("llm", "stall_first", {}),
         ("llm", "reset_mid", {"after": 7}), ("tts", "reset_mid", {"after": 2}),
         ("tts", "refused", {})]


def fake_voice(text: str) -> np.ndarray:
    notice = text in (LOST_CONNECTION, CLOUD_TROUBLE) or "offline" in text
    return tone(max(0.1, len(text) * 0.03), rate=TTS_RATE, freq=660.0 if notice else 440.0)


def _timeline(rig: Rig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per 20 ms window of the output: when its last tick reached the device, loud or not, and
    whether it is the cloud's answer voice (a 440 Hz tone)."""
    audio = rig.output()
    frames = audio[: len(audio) // WINDOW * WINDOW].astype(np.float64).reshape(-1, WINDOW)
    at = rig.opened_at + (np.arange(len(frames)) + 1) * WINDOW / RATE
    loud = np.sqrt((frames**2).mean(axis=1)) > LOUD
    spectrum = np.abs(np.fft.rfft(frames, axis=1))
    peak = np.fft.rfftfreq(WINDOW, 1 / RATE)[spectrum.argmax(axis=1)]
    tonal = spectrum.max(axis=1) ** 2 > 0.5 * (spectrum**2).sum(axis=1)
    answer_voice = tonal & (np.abs(peak - 440.0) < 60)
    return at, loud, answer_voice


async def _case(stage: str, kind: str, params: dict[str, Any], parallel: str | None,
                timeouts: dict[str, float] = FAST_TIMEOUTS) -> dict[str, Any]:
    """One turn under one fault; ``parallel`` is Vosk's live result, or None for
    fallback mode."""
    with tempfile.TemporaryDirectory() as tmp, FakeCloud(
            transcript="what is the weather like today", reply=REPLY,
            speech=fake_voice) as cloud:
        if kind != "refused":
            cloud.fail(stage, kind, **params)
        async with make_rig(Path(tmp), cloud, refused=stage if kind == "refused" else "",
                            timeouts=timeouts) as rig:
            await rig.runner.prewarm()  # as the daemon does at start
            ready = None
            if parallel is not None:
                ready = asyncio.get_running_loop().create_future()
                ready.set_result(parallel)
            result = await rig.turn(vosk_result=ready)
            await asyncio.sleep(0.1)  # the last ticks of the answer reach the file
            at, loud, answer_voice = _timeline(rig)
    (failover,) = rig.named("failover")
    failed = [r for r in cloud.requests_for(stage) if r.fault]
    fault_at = failed[0].received_at if failed else failover.t
    # STT: every sound after the fault is the fallback's; later stages: the fallback
    # is whatever is not the answer voice already streaming when the fault struck.
    fallback = loud & (at >= failover.t) & (True if stage == "stt" else ~answer_voice)
    first = float(at[fallback.argmax()]) if fallback.any() else None
    after = at >= fault_at
    heard = np.flatnonzero(loud & after)
    silence = 0.0
    if len(heard):
        edges = np.concatenate([[fault_at], at[heard]])
        silence = float(np.diff(edges).max() - WINDOW / RATE)
    # After "One moment." the wait is announced, not unexplained: count the silence
    # up to the notice only.
    announced = result.reply.startswith(ONE_MOMENT) and len(heard)
    unexplained = float(at[heard[0]]) - fault_at if announced else silence
    return {
        "case": "-".join([stage, kind, *(f"{k}{v}" for k, v in params.items())]),
        "stt_mode": "parallel" if parallel is not None else "fallback",
        "timeouts": "fast" if timeouts is FAST_TIMEOUTS else "default",
        "wait_notice": bool(announced),
        "detect_ms": round((failover.t - fault_at) * 1000, 1),
        "to_fallback_audio_ms": round((first - fault_at) * 1000, 1) if first else None,
        "after_detect_ms": round((first - failover.t) * 1000, 1) if first else None,
        "longest_silence_ms": round(max(silence, 0.0) * 1000, 1),
        "unexplained_silence_ms": round(max(unexplained, 0.0) * 1000, 1),
        "transcript_engine": result.transcript_engine,
        "reply_engine": result.reply_engine,
        "spoken": result.spoken,
    }


async def _measure(cases: list[tuple[str, str, dict[str, Any]]],
                   stalls: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    live = await vosk_engine().transcribe(question())
    rows = []
    for stage, kind, params in cases:
        rows.append(await _case(stage, kind, params, None))
        if stage == "stt":
            rows.append(await _case(stage, kind, params, live))
    for stage, kind, params in stalls:
        rows.append(await _case(stage, kind, params, None, DEFAULT_TIMEOUTS))
    silences = [r["unexplained_silence_ms"] for r in rows]
    after = [r["after_detect_ms"] for r in rows if r["after_detect_ms"] is not None]
    return {
        "timeouts_s": {"fast": FAST_TIMEOUTS, "default": DEFAULT_TIMEOUTS},
        "cases": rows,
        "max_unexplained_silence_ms": max(silences),
        "max_longest_silence_ms": max(r["longest_silence_ms"] for r in rows),
        "silence_target_ms": 1500,
        "over_target": [f"{r['case']} ({r['stt_mode']}, {r['timeouts']} timeouts)" for r in rows
                        if r["unexplained_silence_ms"] > 1500],
        "median_after_detect_ms": round(float(np.median(after)), 1) if after else None,
        "all_spoken": all(r["spoken"] for r in rows),
    }


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_measure(QUICK if quick else CASES,
                                QUICK_STALLS if quick else DEFAULT_STALLS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="five representative faults")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
