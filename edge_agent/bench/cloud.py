"""Cloud engine overhead: how much each engine adds above the latency the fake
cloud injects (STT 300 ms, LLM first token 250 ms at 40 tokens/s, TTS first byte
150 ms), what a cold connection costs against a prewarmed one, and the CPU cost
of the sentence chunker per delta.

    python -m edge_agent.bench.cloud [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
from typing import Any

import numpy as np

from edge_agent.cloud import CloudClient, CloudLLM, CloudSTT, CloudTTS
from edge_agent.config import Secret
from edge_agent.intents.tools import Toolbox
from edge_agent.testbed.fakecloud import FAKE_KEY, FakeCloud, Latency, Request, tokens
from edge_agent.text import SentenceChunker

INJECTED = Latency(stt=0.300, llm_first_token=0.250, llm_tokens_per_second=40,
                   tts_first_byte=0.150)
REPLY = ("The weather today is mild and dry. Expect a high of eighteen degrees in the "
         "afternoon. Tomorrow brings some rain, so keep an umbrella close.")
QUESTION = [{"role": "user", "content": "what is the weather like"}]


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2)}


async def _turn(cloud: FakeCloud, client: CloudClient, audio: np.ndarray) -> dict[str, float]:
    """One cascade through the engines, timing each stage from its own request.
    ``*_client`` figures are the time the server was not busy waiting on purpose:
    request upload, our encoding/decoding and the event loop."""
    t0 = time.perf_counter()
    await CloudSTT(client).transcribe(audio)
    stt = time.perf_counter() - t0

    chunker = SentenceChunker()
    t1 = time.perf_counter()
    first_delta = first_sentence = None
    sentence = ""
    async for delta in CloudLLM(client).reply(QUESTION, Toolbox()):
        first_delta = first_delta or time.perf_counter() - t1
        ready = chunker.feed(delta)
        if ready and first_sentence is None:
            first_sentence, sentence = time.perf_counter() - t1, ready[0]
    llm_total = time.perf_counter() - t1

    t2 = time.perf_counter()
    first_byte = None
    async for _ in CloudTTS(client).synthesize(sentence):
        first_byte = first_byte or time.perf_counter() - t2
    served = {stage: _served(cloud.requests_for(stage)[-1]) for stage in ("stt", "llm", "tts")}
    return {"stt": stt, "llm_first_token": first_delta or 0.0,
            "first_sentence": first_sentence or 0.0, "llm_total": llm_total,
            "tts_first_byte": first_byte or 0.0,
            "stt_client": stt - served["stt"],
            "llm_first_token_client": (first_delta or 0.0) - served["llm"],
            "tts_first_byte_client": (first_byte or 0.0) - served["tts"]}


def _served(record: Request) -> float:
    """Seconds the server spent between the request and its first response byte."""
    return (record.responded_at or record.received_at) - record.received_at


async def _engines(cloud: FakeCloud, turns: int) -> dict[str, Any]:
    audio = np.zeros(16000 * 2, np.int16)
    samples: dict[str, list[float]] = {}
    async with CloudClient(cloud.settings(), Secret(FAKE_KEY)) as client:
        await client.prewarm()
        for _ in range(turns):
            for name, value in (await _turn(cloud, client, audio)).items():
                samples.setdefault(name, []).append(value)
    # What the fake cannot avoid: its injected waits and the token pacing up to the
    # first sentence ("The weather today is mild and dry." is 7 tokens, the 8th confirms it).
    first_sentence_tokens = len(tokens(REPLY.split(". ")[0] + ".")) + 1
    floor = {
        "stt": INJECTED.stt,
        "llm_first_token": INJECTED.llm_first_token,
        "first_sentence": INJECTED.llm_first_token
        + (first_sentence_tokens - 1) / INJECTED.llm_tokens_per_second,
        "llm_total": INJECTED.llm_first_token
        + (len(tokens(REPLY)) - 1) / INJECTED.llm_tokens_per_second,
        "tts_first_byte": INJECTED.tts_first_byte,
    }
    result: dict[str, Any] = {}
    for name, values in samples.items():
        result[name] = _ms(values)
        if name in floor:
            result[name] |= {
                "injected_ms": round(floor[name] * 1000, 2),
                "overhead_median_ms": round((statistics.median(values) - floor[name]) * 1000,
                                            2)}
    return result


async def _cold_vs_warm(cloud: FakeCloud, runs: int) -> dict[str, Any]:
    """First-token time on a brand-new client (TCP, and TLS for https, set up inside
    the turn) against one prewarmed at start. Loopback has no round-trip time, so
    this is the floor: over a real network each setup round trip adds to "cold"."""
    cold, warm = [], []
    for _ in range(runs):
        for prewarm, into in ((False, cold), (True, warm)):
            async with CloudClient(cloud.settings(), Secret(FAKE_KEY)) as client:
                if prewarm:
                    await client.prewarm()
                start = time.perf_counter()
                async with contextlib.aclosing(CloudLLM(client).reply(QUESTION)) as deltas:
                    async for _ in deltas:
                        into.append(time.perf_counter() - start)
                        break
    return {"cold": _ms(cold), "warm": _ms(warm),
            "saved_median_ms": round((statistics.median(cold) - statistics.median(warm)) * 1000,
                                     2)}


def _connection(runs: int) -> dict[str, Any]:
    result = {}
    for tls in (False, True):
        with FakeCloud(reply=REPLY, tls=tls) as cloud:
            # The https client trusts the fake's certificate as it would a private CA.
            saved = os.environ.get("SSL_CERT_FILE")
            if tls:
                os.environ["SSL_CERT_FILE"] = str(cloud.cert_file)
            try:
                result["https" if tls else "http"] = asyncio.run(_cold_vs_warm(cloud, runs))
            finally:
                if saved is None:
                    os.environ.pop("SSL_CERT_FILE", None)
                else:
                    os.environ["SSL_CERT_FILE"] = saved
    return result


def _chunker_cost(repeats: int) -> dict[str, Any]:
    text = (REPLY + " Dr. Smith said 3.5 is e.g. fine, at 10:30 a.m. in the U.S. ") * 20
    deltas = re.findall(r"\s*\S+", text)
    start = time.process_time()
    sentences = 0
    for _ in range(repeats):
        chunker = SentenceChunker()
        for delta in deltas:
            sentences += len(chunker.feed(delta))
        sentences += len(chunker.flush())
    cpu = time.process_time() - start
    return {"deltas": len(deltas) * repeats, "sentences": sentences,
            "cpu_us_per_delta": round(cpu / (len(deltas) * repeats) * 1e6, 2)}


def run(quick: bool = False) -> dict[str, Any]:
    turns = 5 if quick else 20
    with FakeCloud(reply=REPLY, latency=Latency(**vars(INJECTED))) as cloud:
        engines = asyncio.run(_engines(cloud, turns))
    return {"turns": turns, "injected": vars(INJECTED), "engines": engines,
            "connection": _connection(turns), "chunker": _chunker_cost(3 if quick else 20)}


def main() -> None:
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))


if __name__ == "__main__":
    main()
