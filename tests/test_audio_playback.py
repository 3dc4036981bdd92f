"""The player on real PortAudio (ALSA file devices) and on a real-time .wav output."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from edge_agent.audio import Player
from edge_agent.errors import AudioDeviceError
from edge_agent.events import EventBus
from edge_agent.testbed.alsa import FifoListener, asoundrc, read_raw
from edge_agent.testbed.wait import until
from edge_agent.tools.voices import espeak, read_wav
from tests.test_audio_capture import Recorder, snr_db

RATE = 16000


@pytest.fixture
def speech() -> np.ndarray:
    audio = espeak("turn the kitchen lights off please")
    audio[0] = 1234  # marks where the stream starts in the output
    return audio


def chunks(pcm: bytes, size: int = 4001) -> list[bytes]:
    """Odd-sized chunks, as a network stream delivers them (samples split in two)."""
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


def use_speaker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "speaker.raw"
    for key, value in asoundrc(tmp_path, playback={"edgespk": out}).items():
        monkeypatch.setenv(key, value)
    return out


async def play(player: Player, pcm: bytes, rate: int, engine: str = "piper") -> None:
    """Play ``pcm`` in one write: the ALSA file device is not clocked, so it would
    drain the queue between chunks (a real-time underrun, i.e. a gap) if the test
    fed it piecewise. Chunked writes are tested on the clocked .wav output."""
    stream = player.stream(engine=engine)
    stream.write(pcm, rate)
    stream.end()
    await asyncio.wait_for(stream.drained(), 20)
    assert stream.first_frame_at is not None
    # Queued first, then taken by the device at its next period.
    assert stream.first_queued_at is not None and stream.first_queued_at <= stream.first_frame_at
    assert not stream.stopped


def test_playback_writes_the_expected_samples(tmp_path, monkeypatch, speech) -> None:
    out = use_speaker(tmp_path, monkeypatch)
    bus = EventBus()
    events = Recorder(bus)

    async def main() -> None:
        with Player("edgespk", bus, volume=1.0, rate=RATE, channels=1) as player:
            await play(player, speech.tobytes(), RATE)
            await until(lambda: len(events.named("audio_out_end")) == 1)

    asyncio.run(main())
    written = read_raw(out)
    start = int(np.flatnonzero(written)[0])
    np.testing.assert_array_equal(written[start:start + len(speech)], speech)
    assert [e.name for e in events.events] == ["audio_out_start", "audio_out_end"]
    assert events.events[0].fields == {"engine": "piper"}
    assert events.events[1].fields == {"engine": "piper", "interrupted": False}


def test_24k_tts_is_resampled_to_a_48k_stereo_device(tmp_path, monkeypatch, speech) -> None:
    out = use_speaker(tmp_path, monkeypatch)
    at24 = soxr.resample(speech, RATE, 24000)

    async def main() -> None:
        with Player("edgespk", EventBus(), volume=1.0, rate=48000, channels=2) as player:
            assert player.device_rate == 48000
            await play(player, at24.tobytes(), 24000, engine="cloud")

    asyncio.run(main())
    written = read_raw(out, channels=2)
    np.testing.assert_array_equal(written[:, 0], written[:, 1])
    left = written[:, 0]
    # The resampler's last few samples come with end(), possibly after a gap.
    expected = soxr.resample(at24, 24000, 48000)[:-100]
    start = int(np.flatnonzero(left)[0])
    assert snr_db(left[start:start + len(expected)], expected) > 40


def test_volume_scales_what_is_played(tmp_path, monkeypatch) -> None:
    out = use_speaker(tmp_path, monkeypatch)
    tone = np.full(1600, 10000, dtype=np.int16)

    async def main() -> None:
        with Player("edgespk", EventBus(), volume=0.25, rate=RATE, channels=1) as player:
            await play(player, tone.tobytes(), RATE)

    asyncio.run(main())
    played = read_raw(out)
    assert set(np.unique(played)) == {0, 2500}
    assert np.count_nonzero(played) == 1600


def test_wav_output_is_a_real_time_timeline_and_stop_drops_the_queue(tmp_path, speech) -> None:
    """On the clocked .wav output: an answer starts, is stopped mid-way (the rest
    never plays, drained() returns, the end event says interrupted), and the next
    stream plays normally. The file is a valid WAV while it grows and after."""
    path = tmp_path / "out.wav"
    bus = EventBus()
    events = Recorder(bus)
    long_answer = np.tile(speech, 3)
    earcon = np.full(800, 5000, dtype=np.int16)

    async def main() -> None:
        player = Player(str(path), bus, volume=1.0)
        player.open()
        try:
            answer = player.stream(engine="cloud")
            for chunk in chunks(long_answer.tobytes()):
                answer.write(chunk, RATE)
            answer.end()
            await until(lambda: answer.first_frame_at is not None)
            assert player.playing
            await asyncio.sleep(0.3)
            player.stop()
            assert answer.stopped
            await asyncio.wait_for(answer.drained(), 5)
            await until(lambda: bool(events.named("audio_out_end")))
            assert not player.playing
            assert player.last_stop_latency is not None
            with wave.open(str(path)) as w:  # valid while it grows
                assert w.getnframes() > 0
            await play(player, earcon.tobytes(), RATE, engine="earcon")
        finally:
            player.close()
            player.close()  # safe twice

    asyncio.run(main())
    written = read_wav(path)
    start = int(np.flatnonzero(written)[0])
    played = written[start:]
    earcon_at = int(np.flatnonzero(played == 5000)[0])
    heard = played[:earcon_at]
    cut = int(np.flatnonzero(heard)[-1]) + 1
    # What played is exactly the beginning of the answer; the rest was dropped.
    np.testing.assert_array_equal(heard[:cut], long_answer[:cut])
    assert 0 < cut < len(long_answer) / 2
    np.testing.assert_array_equal(played[earcon_at:earcon_at + len(earcon)], earcon)
    ends = [e.fields for e in events.named("audio_out_end")]
    assert ends == [{"engine": "cloud", "interrupted": True},
                    {"engine": "earcon", "interrupted": False}]


def test_streams_play_in_order_without_gaps(tmp_path) -> None:
    path = tmp_path / "out.wav"
    a = np.full(1000, 1000, dtype=np.int16)
    b = np.full(700, -2000, dtype=np.int16)

    async def main() -> None:
        with Player(str(path), EventBus(), volume=1.0) as player:
            first, second = player.stream(engine="earcon"), player.stream(engine="piper")
            second.write(b.tobytes(), RATE)
            second.end()
            first.write(a.tobytes(), RATE)
            first.end()
            await asyncio.wait_for(second.drained(), 10)
            assert first.done
            assert first.first_frame_at <= second.first_frame_at

    asyncio.run(main())
    written = read_wav(path)
    start = int(np.flatnonzero(written)[0])
    np.testing.assert_array_equal(written[start:start + 1700], np.concatenate([a, b]))


def test_speaker_missing_at_start_is_opened_once_it_appears(tmp_path, monkeypatch) -> None:
    """A missing speaker must not stop the daemon from starting: open() reports it,
    writes fail fast meanwhile, and the device is picked up once ALSA lists it."""
    out = tmp_path / "speaker.raw"
    for key, value in asoundrc(tmp_path, playback={"otherspk": out}).items():
        monkeypatch.setenv(key, value)
    bus = EventBus()
    events = Recorder(bus)

    async def main() -> None:
        player = Player("latespk", bus, reconnect_max=0.3)
        player.open()
        try:
            assert not player.healthy
            with pytest.raises(AudioDeviceError):
                player.stream(engine="cloud").write(b"\0\0" * 160, RATE)
            asoundrc(tmp_path, playback={"otherspk": out, "latespk": out})  # plugged in
            await until(lambda: player.healthy)
            await play(player, np.full(1600, 1000, dtype=np.int16).tobytes(), RATE)
        finally:
            player.close()

    asyncio.run(main())
    oks = [e.fields["ok"] for e in events.named("audio_device")]
    assert oks == [False, True]
    assert np.count_nonzero(read_raw(out)) > 0


def test_write_after_stop_is_dropped_and_an_unopened_player_raises(tmp_path) -> None:
    player = Player(str(tmp_path / "o.wav"), EventBus())
    stream = player.stream(engine="x")
    with pytest.raises(AudioDeviceError):
        stream.write(b"\0\0", RATE)  # not opened
    player.open()
    player.stop()
    stream.write(b"\1\0" * 100, RATE)
    assert not player.playing
    player.close()


def test_output_that_vanishes_is_reported_and_reopened(tmp_path, monkeypatch) -> None:
    """The speaker goes away mid-answer (its pipe breaks, as an unplugged USB
    device's writes fail): the queue is dropped so drained() returns, the loss is
    reported, writes fail fast, and the player reopens once the device is back."""
    fifo = tmp_path / "speaker.fifo"
    for key, value in asoundrc(tmp_path, playback={"pipespk": fifo}).items():
        monkeypatch.setenv(key, value)
    bus = EventBus()
    events = Recorder(bus)
    listener = FifoListener(fifo)
    tone = np.full(RATE * 600, 3000, dtype=np.int16).tobytes()  # outlasts the test

    async def main() -> None:
        nonlocal listener
        player = Player("pipespk", bus, rate=RATE, channels=1, reconnect_max=0.5)
        player.open()
        try:
            answer = player.stream(engine="cloud")
            answer.write(tone, RATE)
            await until(lambda: answer.first_frame_at is not None)
            listener.close()  # unplugged
            await asyncio.wait_for(answer.drained(), 20)
            assert answer.stopped
            await until(lambda: bool(events.named("audio_device")))
            assert not player.healthy
            await until(lambda: bool(events.named("audio_out_end")))
            assert events.named("audio_out_end")[0].fields == {"engine": "cloud",
                                                                "interrupted": True}
            with pytest.raises(AudioDeviceError):
                player.stream(engine="piper").write(b"\0\0" * 160, RATE)
            listener = FifoListener(fifo)  # plugged back in
            await until(lambda: player.healthy)
            await play(player, np.full(1600, 1000, dtype=np.int16).tobytes(), RATE)
        finally:
            listener.close()
            player.close()

    asyncio.run(main())
    device_events = [e.fields for e in events.named("audio_device")]
    assert device_events == [
        {"direction": "output", "ok": False, "reason": "the output stream stopped"},
        {"direction": "output", "ok": True, "reason": "reopened"}]
    assert listener.received > 0
