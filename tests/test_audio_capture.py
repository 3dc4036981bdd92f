"""The microphone on real PortAudio (ALSA file devices) and on a .wav input."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from edge_agent import cli
from edge_agent.audio import Microphone, RingBuffer, list_devices
from edge_agent.events import Event, EventBus
from edge_agent.testbed.alsa import FifoFeed, asoundrc, write_raw
from edge_agent.testbed.wait import until
from edge_agent.tools.voices import espeak, write_wav

RATE = 16000


@pytest.fixture
def speech() -> np.ndarray:
    audio = espeak("the quick brown fox jumps over the lazy dog")
    audio[0] = 1234  # a non-zero first sample marks where the input starts
    return audio


class Recorder:
    """Collects bus events; lets a test wait for one."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        bus.subscribe(self.events.append)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


def snr_db(got: np.ndarray, expected: np.ndarray) -> float:
    """How far ``got`` is from ``expected``: any shift, gap or channel mix-up
    brings this far below 40 dB; rounding differences stay far above."""
    error = got.astype(np.float64) - expected
    return float(10 * np.log10(np.mean(expected.astype(np.float64) ** 2)
                               / (np.mean(error**2) + 1e-9)))


async def capture_through_fifo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               device_audio: np.ndarray, wanted: int, *, rate: int,
                               channels: int, force: bool = True) -> np.ndarray:
    """Feed ``device_audio`` (raw device format) to a capture device through a FIFO
    and return the first ``wanted`` samples the ring received. ``force=False``
    lets the microphone choose the format (the file device accepts any)."""
    fifo = tmp_path / "mic.fifo"
    env = asoundrc(tmp_path, capture={"edgemic": fifo})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ring = RingBuffer(30.0)
    bus = EventBus()
    with FifoFeed(fifo) as feed:
        feed.write(device_audio)
        # Padding pushes the wanted samples through the device's buffers.
        feed.write(np.zeros((rate // 2, channels) if channels > 1 else rate // 2,
                            dtype=np.int16))
        mic = Microphone("EdgeMic", ring, bus, rate=rate if force else None,
                         channels=channels if force else None, stall_timeout=60)
        task = asyncio.create_task(mic.run())
        try:
            # Audio can reach the ring a moment before run() marks the input healthy.
            await until(lambda: ring.total >= wanted and mic.healthy)
            return ring.read_range(0, wanted)
        finally:
            feed.close()  # EOF unblocks the device thread so the stream can close
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)


def test_captured_samples_equal_the_input_file(tmp_path, monkeypatch, speech) -> None:
    """A device that offers 16 kHz mono is opened so: no conversion, exact samples."""
    got = asyncio.run(capture_through_fifo(tmp_path, monkeypatch, speech, len(speech),
                                           rate=RATE, channels=1, force=False))
    np.testing.assert_array_equal(got, speech)


def test_48k_stereo_device_is_converted_to_16k_mono(tmp_path, monkeypatch, speech) -> None:
    at48 = soxr.resample(speech, RATE, 48000)
    stereo = np.stack([at48, at48], axis=1)
    wanted = len(speech) - 200
    got = asyncio.run(capture_through_fifo(tmp_path, monkeypatch, stereo, wanted,
                                           rate=48000, channels=2))
    expected = soxr.resample(at48, 48000, RATE)[:wanted]
    # The stream resampler matches the one-shot conversion, aligned.
    assert snr_db(got, expected) > 40


def test_missing_device_is_retried_until_it_appears(tmp_path, monkeypatch, speech) -> None:
    infile = tmp_path / "late.raw"
    env = asoundrc(tmp_path, capture={"latemic": infile})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ring = RingBuffer(30.0)
    bus = EventBus()
    events = Recorder(bus)

    async def main() -> None:
        mic = Microphone("latemic", ring, bus, rate=RATE, channels=1, reconnect_max=0.5)
        task = asyncio.create_task(mic.run())
        try:
            await until(lambda: bool(events.named("audio_device")))
            assert not mic.healthy
            assert ring.total == 0
            write_raw(infile, speech)  # the device is plugged in
            await until(lambda: mic.healthy and ring.total >= len(speech))
        finally:
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    asyncio.run(main())
    device_events = [e.fields for e in events.named("audio_device")]
    assert device_events[0]["ok"] is False and device_events[0]["direction"] == "input"
    assert device_events[-1]["ok"] is True
    # Reported once per change, not once per retry.
    assert len(device_events) == 2
    np.testing.assert_array_equal(ring.read_range(0, len(speech)), speech)


def test_input_that_stops_delivering_is_reopened_when_it_returns(
        tmp_path, monkeypatch, speech) -> None:
    """The device stalls (no audio: a hung or unplugged microphone): the loss is
    reported, and when the device delivers again capture resumes on its own."""
    fifo = tmp_path / "mic.fifo"
    for key, value in asoundrc(tmp_path, capture={"edgemic": fifo}).items():
        monkeypatch.setenv(key, value)
    ring = RingBuffer(30.0)
    bus = EventBus()
    events = Recorder(bus)
    ramp = np.arange(1, RATE + 1, dtype=np.int16)  # unmistakable once captured
    padding = np.zeros(RATE // 2, dtype=np.int16)

    async def main() -> None:
        feed = FifoFeed(fifo)
        feed.write(speech)
        feed.write(padding)
        mic = Microphone("edgemic", ring, bus, rate=RATE, channels=1, stall_timeout=0.5,
                         reconnect_max=0.5)
        task = asyncio.create_task(mic.run())
        try:
            await until(lambda: ring.total >= len(speech) and mic.healthy)
            await until(lambda: not mic.healthy)  # nothing more comes: a stall
            feed.close()  # the device goes away altogether
            feed = FifoFeed(fifo)  # and comes back with fresh audio
            feed.write(ramp)
            feed.write(padding)
            await until(lambda: mic.healthy)
            await until(lambda: ring_holds(ring, ramp))
        finally:
            feed.close()
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    asyncio.run(main())
    oks = [e.fields["ok"] for e in events.named("audio_device")]
    assert oks == [True, False, True]
    assert "no audio" in events.named("audio_device")[1].fields["reason"]
    np.testing.assert_array_equal(ring.read_range(0, len(speech)), speech)


def ring_holds(ring: RingBuffer, signal: np.ndarray) -> bool:
    """Whether ``signal`` appears in what the ring keeps."""
    kept = ring.read_range(ring.oldest, ring.total)
    return any(np.array_equal(kept[i:i + len(signal)], signal)
               for i in np.flatnonzero(kept == signal[0]))


def test_wav_input_is_replayed_then_silence(tmp_path, speech) -> None:
    """A 22.05 kHz stereo file arrives as 16 kHz mono, paced by the clock thread,
    followed by silence for as long as the microphone runs."""
    mono22 = soxr.resample(speech[:RATE // 2], RATE, 22050)
    path = tmp_path / "input.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(np.stack([mono22, mono22], axis=1).astype(np.int16).tobytes())
    ring = RingBuffer(5.0)
    bus = EventBus()

    async def main() -> None:
        mic = Microphone(str(path), ring, bus)
        task = asyncio.create_task(mic.run())
        try:
            await until(lambda: ring.total >= RATE and mic.healthy)
        finally:
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    asyncio.run(main())
    got = ring.read_range(0, RATE)
    expected = soxr.resample(mono22, 22050, RATE)
    # Streamed through the resampler block by block: within 2 LSB of one whole pass.
    np.testing.assert_allclose(got[:len(expected)].astype(int), expected.astype(int), atol=2)
    assert not got[len(expected) + 320:].any()


def test_missing_wav_input_reports_the_device_error(tmp_path) -> None:
    ring = RingBuffer(1.0)
    bus = EventBus()
    events = Recorder(bus)

    async def main() -> None:
        mic = Microphone(str(tmp_path / "absent.wav"), ring, bus)
        task = asyncio.create_task(mic.run())
        try:
            await until(lambda: bool(events.named("audio_device")))
        finally:
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    asyncio.run(main())
    (event,) = events.named("audio_device")
    assert event.fields["ok"] is False
    assert "absent.wav" in event.fields["reason"]


def test_overruns_reach_the_bus_as_events(tmp_path) -> None:
    ring = RingBuffer(0.5)
    bus = EventBus()
    events = Recorder(bus)
    write_wav(tmp_path / "in.wav", np.full(RATE, 100, dtype=np.int16))
    reader = ring.reader("wake")

    async def main() -> None:
        mic = Microphone(str(tmp_path / "in.wav"), ring, bus)
        task = asyncio.create_task(mic.run())
        try:
            await until(lambda: ring.total >= RATE)  # 1 s into a 0.5 s ring
            await asyncio.wait_for(reader.read(320), 5)
        finally:
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    asyncio.run(main())
    (event,) = events.named("audio_overrun")
    assert event.fields["reader"] == "wake"
    assert event.fields["samples"] >= RATE // 2
    assert reader.overruns == 1


def test_devices_are_listed_with_their_channels(tmp_path, monkeypatch) -> None:
    env = asoundrc(tmp_path, capture={"listmic": tmp_path / "x.raw"},
                   playback={"listspk": tmp_path / "y.raw"})
    write_raw(tmp_path / "x.raw", np.zeros(10, dtype=np.int16))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    found = {d.name: d for d in list_devices()}
    assert {"listmic", "listspk"} <= found.keys()
    assert found["listmic"].max_input_channels > 0
    assert found["listspk"].max_output_channels > 0
    assert found["listspk"].default_rate > 0


def test_devices_verb_prints_a_table(tmp_path, monkeypatch, capsys) -> None:
    env = asoundrc(tmp_path, playback={"tablespk": tmp_path / "y.raw"})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["index", "in", "out", "rate", "name"]
    (row,) = [line.split() for line in lines[1:] if line.endswith("tablespk")]
    assert int(row[2]) > 0 and int(row[3]) > 0
