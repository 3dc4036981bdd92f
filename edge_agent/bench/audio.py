"""Audio front-end benchmark.

Figures: capture callback cost per 10 ms of audio (the conversion and ring
write alone, and the whole PortAudio capture path on an ALSA file device, for
a 16 kHz mono and a 48 kHz stereo device); ring reader throughput (asyncio,
worker thread, read_range); the player's stop latency (median / max over many
stops: on the real-time .wav output, and on PortAudio including the device's
reported output latency); .wav input pacing; peak RSS.

    python -m edge_agent.bench.audio [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_agent.audio import SAMPLE_RATE, Microphone, Player, RingBuffer
from edge_agent.audio.convert import CaptureConverter
from edge_agent.events import EventBus
from edge_agent.testbed.alsa import asoundrc, write_raw
from edge_agent.testbed.wait import until

FORMATS = ((16000, 1), (48000, 2))


def stats_ms(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {"median_ms": round(float(np.median(ms)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "max_ms": round(float(ms.max()), 3), "n": len(values)}


@contextlib.contextmanager
def alsa_devices(directory: Path, **devices: dict[str, Path]) -> Iterator[None]:
    """ALSA file devices for the duration (PortAudio reads the env when it starts)."""
    env = asoundrc(directory, **devices)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_signal(seconds: float, rate: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    mono = rng.normal(0, 3000, int(seconds * rate)).astype(np.int16)
    return np.repeat(mono, channels) if channels > 1 else mono


def callback_work(periods: int) -> dict[str, dict[str, float]]:
    """What the capture callback does per period (convert + ring write), timed
    in-process: microseconds of CPU per 10 ms of audio."""
    out = {}
    for rate, channels in FORMATS:
        period = round(rate * 0.02)
        data = test_signal(periods * 0.02, rate, channels).tobytes()
        size = period * channels * 2
        convert, ring = CaptureConverter(rate, channels), RingBuffer(30.0)
        costs = []
        for i in range(periods):
            chunk = data[i * size:(i + 1) * size]
            started = time.perf_counter()
            ring.write(convert(chunk))
            costs.append((time.perf_counter() - started) / 2)  # 20 ms period -> per 10 ms
        us = np.array(costs) * 1e6
        out[f"{rate}hz_x{channels}"] = {"median_us_per_10ms": round(float(np.median(us)), 1),
                                        "p99_us_per_10ms": round(float(np.percentile(us, 99)), 1)}
    return out


async def _portaudio_capture(spec: str, rate: int, channels: int, seconds: float) -> dict:
    ring = RingBuffer(30.0)
    mic = Microphone(spec, ring, EventBus(), rate=rate, channels=channels)
    task = asyncio.create_task(mic.run())
    try:
        await until(lambda: mic.healthy)
        cpu0, wall0, total0 = time.process_time(), time.monotonic(), ring.total
        await asyncio.sleep(seconds)
        cpu, wall, samples = (time.process_time() - cpu0, time.monotonic() - wall0,
                              ring.total - total0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    tens_of_ms = samples / (SAMPLE_RATE / 100)
    return {"cpu_us_per_10ms": round(cpu / tens_of_ms * 1e6, 1),
            "audio_s_per_wall_s": round(samples / SAMPLE_RATE / wall, 1)}


def portaudio_capture(tmp: Path, seconds: float) -> dict[str, dict]:
    """The whole capture path on an unclocked ALSA file device: it runs as fast as
    the CPU allows, so CPU time per 10 ms of audio delivered is the cost."""
    out = {}
    for rate, channels in FORMATS:
        infile = write_raw(tmp / f"in{rate}.raw", test_signal(10, rate, channels))
        with alsa_devices(tmp / f"cap{rate}", capture={"benchmic": infile}):
            out[f"{rate}hz_x{channels}"] = asyncio.run(
                _portaudio_capture("benchmic", rate, channels, seconds))
    return out


def reader_throughput(seconds_of_audio: float) -> dict[str, float]:
    seconds_of_audio = max(seconds_of_audio, 15)  # read_range reads 15 s (a long utterance)
    ring = RingBuffer(seconds_of_audio + 1)
    ring.write(test_signal(seconds_of_audio, SAMPLE_RATE, 1))
    n = int(seconds_of_audio * SAMPLE_RATE) // 1280 * 1280

    async def drain_async() -> float:
        reader = ring.reader("bench", start=0)
        started = time.perf_counter()
        for _ in range(n // 1280):
            await reader.read(1280)
        return time.perf_counter() - started

    async_s = asyncio.run(drain_async())
    reader = ring.reader("bench-thread", start=0)
    started = time.perf_counter()
    for _ in range(n // 1280):
        reader.read_blocking(1280)
    blocking_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(20):
        ring.read_range(0, 15 * SAMPLE_RATE)
    range_s = (time.perf_counter() - started) / 20
    reads = n // 1280
    return {"async_read_1280_msamples_per_s": round(n / async_s / 1e6, 2),
            "async_read_1280_us": round(async_s / reads * 1e6, 2),
            "blocking_read_1280_msamples_per_s": round(n / blocking_s / 1e6, 2),
            "blocking_read_1280_us": round(blocking_s / reads * 1e6, 2),
            "read_range_15s_ms": round(range_s * 1000, 3)}


async def _stop_latencies(player: Player, stops: int) -> list[float]:
    tone = (np.sin(np.arange(SAMPLE_RATE * 5) * 0.05) * 8000).astype(np.int16).tobytes()
    latencies = []
    for _ in range(stops):
        stream = player.stream(engine="bench", events=False)
        stream.write(tone, SAMPLE_RATE)
        stream.end()
        await until(lambda s=stream: s.first_frame_at is not None)
        await asyncio.sleep(random.uniform(0.0, 0.05))
        player.stop()
        # The latency is measured at the first silent period the device pulls.
        await until(lambda: player.last_stop_latency is not None)
        latencies.append(player.last_stop_latency)
        player.last_stop_latency = None
    return latencies


def stop_latency(tmp: Path, stops: int) -> dict[str, dict[str, float]]:
    out = {}
    with Player(str(tmp / "out.wav"), EventBus(), volume=1.0) as player:
        out["wav_output"] = stats_ms(asyncio.run(_stop_latencies(player, stops)))
    with (alsa_devices(tmp / "play", playback={"benchspk": "/dev/null"}),
          Player("benchspk", EventBus(), rate=48000, channels=2) as player):
        result = stats_ms(asyncio.run(_stop_latencies(player, stops)))
        result["device_output_latency_ms"] = round(player.output_latency * 1000, 2)
        out["portaudio_48k_stereo"] = result
    return out


def wav_input_pacing(tmp: Path, seconds: float) -> dict[str, float]:
    """Audio seconds delivered per wall second by the .wav microphone (1.0 = real time)."""
    path = tmp / "pacing.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(test_signal(1.0, SAMPLE_RATE, 1).tobytes())

    async def main() -> float:
        ring = RingBuffer(30.0)
        task = asyncio.create_task(Microphone(str(path), ring, EventBus()).run())
        try:
            await until(lambda: ring.total > 0)
            t0, n0 = time.monotonic(), ring.total
            await asyncio.sleep(seconds)
            return (ring.total - n0) / SAMPLE_RATE / (time.monotonic() - t0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return {"audio_s_per_wall_s": round(asyncio.run(main()), 3)}


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as name:
        tmp = Path(name)
        result = {
            "callback_work": callback_work(500 if quick else 5000),
            "portaudio_capture": portaudio_capture(tmp, 0.3 if quick else 1.0),
            "reader_throughput": reader_throughput(10 if quick else 60),
            "stop_latency": stop_latency(tmp, 10 if quick else 60),
            "wav_input_pacing": wav_input_pacing(tmp, 1.0 if quick else 3.0),
        }
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["ring_30s_mb"] = round(RingBuffer(30.0).capacity * 2 / 2**20, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
