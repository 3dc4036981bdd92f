"""Fleet benchmark: three real daemons on one Mosquitto broker, each with a .wav
microphone, hear the same wake words at different levels (the loudest speaker
changes from one wake word to the next). Exactly one should answer each, always
the loudest, and arbitration should add at most its window to that speaker's
time from detection to listening. Then the broker is killed and restarted:
how long until every speaker is "online" in Home Assistant again.

    python -m edge_agent.bench.fleet [--quick]
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

from edge_agent.testbed.broker import Broker
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.fleet import QUIET, Fleet, Watcher
from edge_agent.tools.voices import piper, silence

SPEAKERS = ("hall", "kitchen", "den")
GAINS = (1.0, 0.6, 0.35)
"""The talker as each speaker hears it: 0, -4.4 and -9.1 dB."""
WINDOW = 0.2
LEAD = 1.0
GAP = 4.0
"""After each phrase: the winner listens (1 s without speech), then its detector
warms up again (1.5 s); the others sit out their refractory period (2 s)."""


def _recordings(rounds: int) -> tuple[list[np.ndarray], list[float], list[int]]:
    """Per speaker, the whole recording; the start (s) of each round; its loudest."""
    phrase = piper("hey jarvis")
    segment = np.concatenate([silence(LEAD), phrase, silence(GAP)])
    audios: list[list[np.ndarray]] = [[] for _ in SPEAKERS]
    starts, loudest = [], []
    for k in range(rounds):
        starts.append(k * len(segment) / 16000)
        order = [(i + k) % len(SPEAKERS) for i in range(len(SPEAKERS))]
        loudest.append(order[0])
        for rank, speaker in enumerate(order):
            scaled = np.clip(segment.astype(np.float64) * GAINS[rank], -32768, 32767)
            audios[speaker].append(scaled.astype(np.int16))
    return [np.concatenate(a) for a in audios], starts, loudest


async def _fleet(tmp: Path, rounds: int) -> dict[str, Any]:
    audios, starts, loudest = _recordings(rounds)
    segment_s = starts[1] if rounds > 1 else LEAD + GAP + 1.0
    with Broker(tmp) as broker, FakeCloud() as fake:
        async with Fleet(tmp, fake, broker, list(SPEAKERS), window=WINDOW,
                         extra=QUIET) as fleet:
            await fleet.connected()
            began = time.monotonic()
            await fleet.hear(audios)
            await asyncio.sleep(starts[-1] + segment_s + 1.0)
            result = _score(fleet, began, starts, segment_s, loudest)
            result["broker_return_to_online_s"] = await _broker_return(fleet, broker)
    return result


def _score(fleet: Fleet, began: float, starts: list[float], segment_s: float,
           loudest: list[int]) -> dict[str, Any]:
    answers = wrong = detections = unanswered = several = unarbitrated = 0
    extra_ms: list[float] = []
    for k, start in enumerate(starts):
        lo, hi = began + start, began + start + segment_s
        answered = []
        for i, speaker in enumerate(fleet.speakers):
            wakes = [e for e in speaker.named("wake") if lo <= e.t < hi]
            detections += len(wakes)
            # An answer is a turn that started listening, whatever the arbiter said:
            # a speaker that skipped arbitration (disconnected, a failed claim) counts.
            listening = [e.t for e in speaker.named("state", state="listening")
                         if lo <= e.t < hi]
            if not listening:
                continue
            answered.append(i)
            won = [v for v in speaker.named("wake_arbitration", won=True) if lo <= v.t < hi]
            unarbitrated += not won
            if wakes:
                extra_ms.append((listening[0] - wakes[0].t) * 1000)
        answers += len(answered)
        wrong += sum(1 for i in answered if i != loudest[k])
        unanswered += not answered
        several += len(answered) > 1
    return {
        "speakers": len(fleet.speakers), "window_ms": WINDOW * 1000,
        "wakes": len(starts), "detections": detections, "answers": answers,
        "wrong_speaker": wrong, "unanswered": unanswered, "answered_twice_or_more": several,
        "answered_without_winning_arbitration": unarbitrated,
        "extra_latency_ms": {
            "median": round(statistics.median(extra_ms), 1) if extra_ms else None,
            "max": round(max(extra_ms), 1) if extra_ms else None,
            "budget": WINDOW * 1000 + 20},
    }


async def _broker_return(fleet: Fleet, broker: Broker) -> float:
    """Kill the broker, start it again, time until every speaker is back online."""
    broker.kill()
    async with asyncio.timeout(30):
        while any(s.daemon.mqtt.connected for s in fleet.speakers):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    broker.start()
    back = time.monotonic()
    async with Watcher(broker, "edge-agent/+/availability") as ha:
        times = [await ha.wait(f"edge-agent/{s.name}/availability", b"online", within=30)
                 for s in fleet.speakers]
    return round(max(times) - back, 2)


def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_fleet(Path(tmp), 6 if quick else 20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 wake words instead of 20")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
