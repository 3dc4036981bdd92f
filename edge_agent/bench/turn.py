"""The latency users feel: end of speech to the first audio frame handed to the
speaker, through our streaming TurnRunner and, in the same run on the same
engines, through the naive cascade (whole transcript, then the whole reply,
then all of its audio, then play).

The fake cloud injects fixed latencies (STT 300 ms, LLM first token 250 ms at
40 tokens/s, TTS first byte 150 ms); "overhead" is what we add above the
injected latency on the streaming path: HTTP on loopback, WAV encoding,
chunking, queueing and the output device's 10 ms period, also given step by step
(``overhead_by_step_ms``: stt_done = upload and transcription client,
llm_first_token = chat request, first_sentence = chunking, tts_first_byte = the
speech request, first_audio = our queue and the device's period).

    python -m edge_agent.bench.turn [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.bench import read_pauses, spoken_turn
from edge_agent.bench.spoken_turn import NaiveTurns
from edge_agent.testbed.fakecloud import FakeCloud, Latency, tokens
from edge_agent.testbed.rig import Rig, make_rig, question
from edge_agent.text import SentenceChunker

INJECTED = Latency(stt=0.300, llm_first_token=0.250, llm_tokens_per_second=40,
                   tts_first_byte=0.150)
TRANSCRIPT = "what is the weather like today"
# A typical spoken answer: three sentences, 32 tokens.
REPLY = ("It is mild and dry today. Expect a high of eighteen degrees in the afternoon, "
         "with a light breeze from the west. Tomorrow brings some rain, so keep an "
         "umbrella close by.")
STAGES = ("stt_done", "llm_first_token", "first_sentence", "tts_first_byte", "first_audio")


def injected_stages() -> dict[str, float]:
    """The injected part of each step to the first audio when streaming: STT, the
    LLM's first token, the tokens up to the one that completes the first sentence,
    TTS first byte, and nothing for the hand-over to the device."""
    chunker = SentenceChunker()
    completing = next(i for i, token in enumerate(tokens(REPLY)) if chunker.feed(token))
    return {"stt_done": INJECTED.stt, "llm_first_token": INJECTED.llm_first_token,
            "first_sentence": completing / INJECTED.llm_tokens_per_second,
            "tts_first_byte": INJECTED.tts_first_byte, "first_audio": 0.0}


def injected_naive() -> float:
    """The naive cascade waits for every token before asking for any audio."""
    n = len(tokens(REPLY))
    return (INJECTED.stt + INJECTED.llm_first_token + (n - 1) / INJECTED.llm_tokens_per_second
            + INJECTED.tts_first_byte)


async def naive_turn(rig: Rig, audio: np.ndarray) -> float:
    """The classic three-call pipeline on the same engines and the same speaker."""
    result = await NaiveTurns(rig.runner, rig.player).run(
        audio, end_of_speech=time.monotonic(), turn_id=0)
    return result.timings["first_audio"] - result.timings["end_of_speech"]


def _figures(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1000, 1),
            "min_ms": round(ordered[0] * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


async def _measure(turns: int) -> dict[str, Any]:
    audio = question()
    streaming: list[float] = []
    naive: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    with tempfile.TemporaryDirectory() as tmp, FakeCloud(
            transcript=TRANSCRIPT, reply=REPLY, latency=INJECTED,
            seconds_per_char=0.01) as cloud:
        async with make_rig(Path(tmp), cloud) as rig:
            await rig.client.prewarm()
            for n in range(turns):
                # Alternate so drift in the machine's load hits both alike.
                result = await asyncio.wait_for(rig.runner.run(
                    audio, end_of_speech=time.monotonic(), turn_id=n), 30)
                rig.conversation.clear()
                t0 = result.timings["end_of_speech"]
                streaming.append(result.timings["first_audio"] - t0)
                for key in STAGES:
                    stages[key].append(result.timings[key] - t0)
                naive.append(await asyncio.wait_for(naive_turn(rig, audio), 30))
    injected = injected_stages()
    floor = sum(injected.values())
    overhead = [s - floor for s in streaming]
    # Each step's own overhead: its median duration minus what was injected into it.
    steps, before = {}, 0.0
    for key in STAGES:
        at = statistics.median(stages[key])
        steps[key] = round((at - before - injected[key]) * 1000, 1)
        before = at
    return {
        "turns": turns,
        "injected_ms": {"stt": 300, "llm_first_token": 250, "tokens_per_second": 40,
                        "tts_first_byte": 150},
        "streaming": _figures(streaming),
        "naive": _figures(naive),
        "ratio_median": round(statistics.median(naive) / statistics.median(streaming), 2),
        "injected_floor_streaming_ms": round(floor * 1000, 1),
        "injected_floor_naive_ms": round(injected_naive() * 1000, 1),
        "overhead": _figures(overhead),
        "overhead_target_ms": 30,
        "stages_median_ms": {k: round(statistics.median(v) * 1000, 1)
                             for k, v in stages.items()},
        "overhead_by_step_ms": steps,
    }


async def _measure_all(turns: int) -> dict[str, Any]:
    figures = await _measure(turns)
    with tempfile.TemporaryDirectory() as tmp:
        figures["end_of_question"] = {
            "end_silence_s": 0.6, "turns_after_the_first": turns,
            **await spoken_turn.measure(Path(tmp), turns, transcript=TRANSCRIPT,
                                        reply=REPLY, latency=INJECTED, question=question()),
        }
        figures["natural_pauses"] = await spoken_turn.pauses(Path(tmp), latency=INJECTED)
    figures["read_request_pauses"] = read_pauses.measure()
    return figures


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_measure_all(5 if quick else 20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 turns instead of 20")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
