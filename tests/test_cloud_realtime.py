"""The Realtime transcription client (edge_agent.cloud.realtime) and the live
stream of a turn (edge_agent.agent.livestt) against the fake WebSocket server
on 127.0.0.1: the protocol, every fault as an SttCloudError, the socket closed
on every path."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import numpy as np
import pytest

from edge_agent.agent.livestt import LiveCloudSTT
from edge_agent.audio import RingBuffer
from edge_agent.cloud.realtime import RealtimeSTT, realtime_url
from edge_agent.config import CloudSettings, CloudTimeouts, Secret
from edge_agent.errors import SttCloudError
from edge_agent.events import Event, EventBus
from edge_agent.testbed.fakecloud import run, tone
from edge_agent.testbed.fakerealtime import FakeRealtime

KEY = Secret("sk-test-key")


@pytest.fixture
def realtime() -> Iterator[FakeRealtime]:
    with FakeRealtime(transcript="what time is it", latency=0.05) as server:
        yield server


def client(url: str, **settings: object) -> RealtimeSTT:
    cloud = CloudSettings(stt_streaming=True, stt_streaming_url=url,
                          timeouts=CloudTimeouts(connect=1.0), **settings)  # type: ignore[arg-type]
    return RealtimeSTT(cloud, KEY)


def assert_closed_by_now(realtime: FakeRealtime) -> None:
    """The server saw the last session end, while this loop (blocked here) does
    nothing more: only a socket the client already closed gets there."""
    assert realtime.sessions[-1].closed.wait(5), "the client left its socket open"


def speech(seconds: float) -> np.ndarray:
    """A tone at 16 kHz (the ring's rate)."""
    return tone(seconds, rate=16000)


def test_the_url_follows_base_url_unless_set() -> None:
    assert realtime_url(CloudSettings()) == (
        "wss://api.openai.com/v1/realtime?intent=transcription")
    assert realtime_url(CloudSettings(base_url="http://127.0.0.1:8000/v1/")) == (
        "ws://127.0.0.1:8000/v1/realtime?intent=transcription")
    assert realtime_url(CloudSettings(stt_streaming_url="ws://h/x")) == "ws://h/x"


def test_a_session_transcribes_each_commit_with_deltas(realtime: FakeRealtime) -> None:
    partials: list[str] = []

    async def scenario() -> tuple[str, str]:
        session = await client(realtime.url, language="de").open(partials.append)
        try:
            for _ in range(5):
                await session.append(speech(0.1))
            first = await session.commit()
            await session.append(speech(0.2))
            realtime.queue_transcripts("second part")
            second = await session.commit()
            return await first, await second
        finally:
            await session.aclose()

    realtime.queue_transcripts("what time is it")
    assert run(scenario()) == ("what time is it", "second part")
    session = realtime.wait_closed()
    assert session.headers["authorization"] == "Bearer sk-test-key"
    assert session.path == "/v1/realtime?intent=transcription"
    assert session.config == {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-mini-transcribe", "language": "de"},
        "turn_detection": None}}}
    # 0.5 s then 0.2 s at 24 kHz, each whole (the resampler is flushed at a commit).
    assert [abs(len(s) - n) < 3 for s, n in zip(session.segments, (12000, 4800), strict=True)] == [
        True, True]
    # Each segment's text so far (the two segments' deltas may interleave).
    assert [p for p in partials if p.startswith("what")] == [
        "what", "what time", "what time is", "what time is it"]
    assert [p for p in partials if p.startswith("second")] == ["second", "second part"]


@pytest.mark.parametrize(("status", "offline"), [(401, False), (404, False), (503, True)])
def test_a_refused_handshake_is_an_stt_error(realtime: FakeRealtime, status: int,
                                             offline: bool) -> None:
    realtime.fail("status", status=status)
    with pytest.raises(SttCloudError, match=f"HTTP {status}") as caught:
        run(client(realtime.url).open())
    assert caught.value.offline is offline


def test_a_refused_connection_is_an_offline_stt_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SttCloudError) as caught:
        run(client(f"ws://127.0.0.1:{port}/v1/realtime").open())
    assert caught.value.offline


@pytest.mark.parametrize("kind", ["error_event", "malformed_json", "reset_mid"])
def test_a_broken_stream_fails_the_transcript(realtime: FakeRealtime, kind: str) -> None:
    realtime.fail(kind, after=3)

    async def scenario() -> None:
        session = await client(realtime.url).open()
        try:
            for _ in range(5):
                await session.append(speech(0.1))
                await asyncio.sleep(0.01)
            await (await session.commit())
        finally:
            await session.aclose()

    with pytest.raises(SttCloudError):
        run(scenario(), timeout=10)
    realtime.wait_closed()


def test_closing_mid_wait_fails_the_transcript_and_closes_the_socket(
        realtime: FakeRealtime) -> None:
    realtime.fail("stall_first", seconds=5)

    async def scenario() -> None:
        session = await client(realtime.url).open()
        await session.append(speech(0.2))
        pending = await session.commit()
        await asyncio.sleep(0.1)
        await session.aclose()
        await pending

    with pytest.raises(SttCloudError, match="closed"):
        run(scenario(), timeout=10)
    realtime.wait_closed(timeout=3)


@pytest.mark.parametrize("steps", [1, 3], ids=["before_the_close_frame", "mid_handshake"])
def test_a_cancelled_close_still_closes_the_socket(realtime: FakeRealtime, steps: int) -> None:
    """A turn unwinding may cancel ``aclose``: the socket is closed anyway."""

    async def scenario() -> None:
        session = await client(realtime.url).open()
        await session.append(speech(0.2))
        await (await session.commit())  # the server is idle, waiting for a frame
        closing = asyncio.create_task(session.aclose())
        for _ in range(steps):  # 3: the close frame is out, the server's answer is not in
            await asyncio.sleep(0)
        closing.cancel()
        await asyncio.wait({closing})
        assert_closed_by_now(realtime)

    run(scenario())


# --- the live stream of a turn ------------------------------------------------------------


async def feed(ring: RingBuffer, audio: np.ndarray, *, step: float = 0.02) -> None:
    """Write ``audio`` into the ring in real-time-like 20 ms periods (faster)."""
    n = int(ring.rate * step)
    for i in range(0, len(audio), n):
        ring.write(audio[i:i + n])
        await asyncio.sleep(0.002)


def test_a_pause_commit_and_the_rest_join_into_one_transcript(realtime: FakeRealtime) -> None:
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    realtime.queue_transcripts("set a timer for", "ten minutes")

    async def scenario() -> tuple[str, str]:
        ring = RingBuffer(10)
        live = LiveCloudSTT(client(realtime.url), ring, 0, bus, turn_id=3)
        try:
            await feed(ring, speech(0.6))
            at_pause = live.transcript(ring.total)
            await feed(ring, speech(0.5))
            final = live.end(ring.total)
            assert final is not None
            return await at_pause, await final
        finally:
            await live.aclose()

    assert run(scenario()) == ("set a timer for", "set a timer for ten minutes")
    session = realtime.wait_closed()
    assert session.events.count("input_audio_buffer.commit") == 2
    assert [round(len(s) / 24000, 1) for s in session.segments] == [0.6, 0.5]
    partials = [e.fields["text"] for e in events if e.name == "transcript_partial"]
    assert partials[-1] == "set a timer for ten minutes"
    assert "set a timer for ten" in partials
    assert {e.fields["turn_id"] for e in events} == {3}


def test_words_sent_before_the_commit_are_partials_already(realtime: FakeRealtime) -> None:
    """A live model (gpt-live-transcribe) sends words while the audio arrives."""
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    realtime.early_delta = "what"

    async def scenario() -> str:
        ring = RingBuffer(10)
        live = LiveCloudSTT(client(realtime.url), ring, 0, bus, turn_id=1)
        try:
            await feed(ring, speech(0.5))
            while not events:  # noqa: ASYNC110 - the partial arrives from the socket
                await asyncio.sleep(0.005)
            assert realtime.sessions[0].events.count("input_audio_buffer.commit") == 0
            final = live.end(ring.total)
            assert final is not None
            return await final
        finally:
            await live.aclose()

    assert run(scenario(), timeout=10) == "what time is it"
    assert events[0].fields["text"] == "what"


def test_a_discarded_guess_does_not_break_the_stream(realtime: FakeRealtime) -> None:
    async def scenario() -> str:
        ring = RingBuffer(10)
        live = LiveCloudSTT(client(realtime.url), ring, 0, EventBus(), turn_id=1)
        try:
            await feed(ring, speech(0.4))
            guess = live.transcript(ring.total)
            await asyncio.sleep(0)
            guess.cancel()  # the speculative turn was discarded
            await feed(ring, speech(0.4))
            final = live.end(ring.total)
            assert final is not None
            return await final
        finally:
            await live.aclose()  # cancels the stream's own close handshake
            assert_closed_by_now(realtime)

    realtime.transcript = "hello"
    assert run(scenario()) == "hello hello"


def test_a_failed_stream_fails_every_transcript_and_closes(realtime: FakeRealtime) -> None:
    realtime.fail("error_event")

    async def scenario() -> None:
        ring = RingBuffer(10)
        live = LiveCloudSTT(client(realtime.url), ring, 0, EventBus(), turn_id=1)
        try:
            await feed(ring, speech(0.4))
            with pytest.raises(SttCloudError, match="fake_error"):
                await live.transcript(ring.total)
            with pytest.raises(SttCloudError, match="fake_error"):
                await live.transcript(ring.total)
        finally:
            await live.aclose()

    run(scenario())
    realtime.wait_closed()


def test_cancelling_the_turn_closes_the_socket(realtime: FakeRealtime) -> None:
    async def scenario() -> None:
        ring = RingBuffer(10)
        live = LiveCloudSTT(client(realtime.url), ring, 0, EventBus(), turn_id=1)
        await feed(ring, speech(0.3))
        await asyncio.sleep(0.1)
        task = asyncio.create_task(live.aclose())
        await task

    run(scenario())
    session = realtime.wait_closed(timeout=3)
    assert "input_audio_buffer.commit" not in session.events
