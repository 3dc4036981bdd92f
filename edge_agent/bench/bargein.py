"""Barge-in benchmark: button press to silence at the speaker, through the real
daemon (gpiozero mock pin -> PushButton -> Agent -> Player on the real-time
.wav output, the fake cloud speaking a long answer).

Per press: the time from driving the pin low to ``Player.stop()`` (the
``barge_in`` event), plus ``Player.last_stop_latency`` (stop to the first
silent period handed to the device). The last audio frame was handed over
before that silent period, so the figure is an upper bound of "press to last
audio frame". Target: at most 50 ms.

Also: the whole daemon's CPU while idle (listening for the wake word on
silence), as percent of one core, measured in this process over a few seconds.

    python -m edge_agent.bench.bargein [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.harness import NO_EARCONS, Harness
from edge_agent.testbed.wait import poll_until
from edge_agent.tools.voices import silence

IDLE_SECONDS = 9.0
SAY = "This is a long announcement that keeps the speaker busy for a while. " * 3
EXTRA = NO_EARCONS + "[turn]\nno_speech_timeout = 0.3\n"


def _stats_ms(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {"median_ms": round(float(np.median(ms)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "worst_ms": round(float(ms.max()), 2)}


async def _measure(presses: int, tmp: Path) -> dict[str, Any]:
    to_stop: list[float] = []
    to_silence: list[float] = []
    with FakeCloud() as fake:
        harness = Harness(tmp, fake, silence(1.0), extra=EXTRA)
        # No pre-roll: the turn that follows each barge-in ends quickly.
        harness.config.write_text(harness.config.read_text().replace(
            "[audio]\n", "[audio]\npreroll_seconds = 0.0\n"))
        async with harness as h:
            agent, player = h.daemon.agent, h.daemon.player
            for n in range(presses):
                say = asyncio.create_task(agent.say(SAY))
                await h.wait_event("audio_out_start", count=n + 1, within=20)
                await asyncio.sleep(0.15)  # well into the answer
                player.last_stop_latency = None
                pressed = time.monotonic()
                h.button(True)
                barge_in = await h.wait_event("barge_in", count=n + 1, within=10)
                await poll_until(lambda: player.last_stop_latency is not None, 5)
                h.button(False)
                to_stop.append(barge_in.t - pressed)
                to_silence.append(barge_in.t - pressed + player.last_stop_latency)
                assert not await asyncio.wait_for(say, 10), "the announcement was not cut"
                await poll_until(lambda: agent.state == "idle", 10)
            idle_cpu = await _idle_cpu(IDLE_SECONDS / (3 if presses < 50 else 1))
    return {"presses": presses,
            "press_to_stop": _stats_ms(to_stop),
            "press_to_silence": _stats_ms(to_silence),
            "target_ms": 50.0,
            "met": bool(max(to_silence) <= 0.050),
            "idle_cpu_percent_of_one_core": idle_cpu}


async def _idle_cpu(seconds: float) -> float:
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return round(100 * (time.process_time() - cpu) / (time.monotonic() - wall), 2)


def run(quick: bool = False) -> dict[str, Any]:
    presses = 10 if quick else 50
    with tempfile.TemporaryDirectory(prefix="bench-bargein-") as tmp:
        return asyncio.run(asyncio.wait_for(_measure(presses, Path(tmp)), 60 + presses * 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 presses instead of 50")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
