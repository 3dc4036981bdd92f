"""Streaming recognition in a turn (cloud.stt_streaming): the transcript streamed
while the user spoke replaces the upload, and every fault of the stream ends in
speech through the upload of the same utterance, with the socket closed.

Through the real TurnRunner (edge_agent/testbed/rig.py: real HTTP fake cloud,
Piper, Vosk, a .wav speaker) and the real daemon (edge_agent/testbed/harness.py:
a .wav microphone, the wake word, the end-of-turn detector, speculative turns).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.agent.livestt import LiveCloudSTT
from edge_agent.agent.turn import TurnResult
from edge_agent.audio import RingBuffer
from edge_agent.cloud import realtime as realtime_module
from edge_agent.cloud.realtime import RealtimeSTT
from edge_agent.config import CloudSettings, Secret
from edge_agent.errors import SttCloudError
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.fakerealtime import FakeRealtime
from edge_agent.testbed.harness import NO_EARCONS, Harness, config_text, wake_then
from edge_agent.testbed.rig import Rig, loud_seconds, make_rig, question, sync
from edge_agent.tools.voices import piper, silence

STREAMED = "what time is it"
UPLOADED = "what is the weather like today"


@pytest.fixture
def realtime() -> Iterator[FakeRealtime]:
    with FakeRealtime(transcript=STREAMED, latency=0.05) as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(transcript=UPLOADED, reply="It is sunny.") as server:
        yield server


async def streamed_turn(rig: Rig, audio: np.ndarray) -> TurnResult:
    """Stream ``audio`` as the agent does while listening, then run the turn."""
    ring = RingBuffer(30)
    client = RealtimeSTT(rig.runner.settings.cloud, Secret("sk-test-key"))
    live = LiveCloudSTT(client, ring, 0, rig.runner.bus, turn_id=1)
    try:
        period = ring.rate // 50
        for i in range(0, len(audio), period):
            ring.write(audio[i:i + period])
            await asyncio.sleep(0.001)
        return await rig.turn(audio, streamed=live.end(ring.total))
    finally:
        await live.aclose()


def streaming(realtime: FakeRealtime) -> dict[str, Any]:
    return {"stt_streaming": True, "stt_streaming_url": realtime.url}


@sync
async def test_the_streamed_transcript_replaces_the_upload(
        tmp_path: Path, cloud: FakeCloud, realtime: FakeRealtime) -> None:
    async with make_rig(tmp_path, cloud, prefer_local=False, **streaming(realtime)) as rig:
        result = await streamed_turn(rig, question())
        output = rig.output()
    assert (result.transcript, result.transcript_engine) == (STREAMED, "cloud")
    assert cloud.requests_for("stt") == []
    assert cloud.requests_for("llm")[0].messages[-1]["content"] == STREAMED
    assert loud_seconds(output, rig.rate()) > 0.2
    assert rig.named("failover") == []
    assert [e.fields["text"] for e in rig.named("transcript_partial")] == [
        "what", "what time", "what time is", "what time is it"]
    session = realtime.wait_closed()
    # The whole question went up once, at 24 kHz.
    assert abs(len(session.appended) - len(question()) * 3 // 2) < 3


# (fault, parameters); "refused" is a server that is not there.
STREAM_FAULTS = [
    ("refused", {}),
    ("status", {"status": 401}),
    ("status", {"status": 404}),
    ("error_event", {}),
    ("malformed_json", {}),
    ("stall_first", {"seconds": 5.0}),
    ("stall_mid", {"seconds": 5.0}),
    ("reset_mid", {"after": 5}),
]


@pytest.mark.parametrize(("kind", "params"), STREAM_FAULTS,
                         ids=[f"{k}{''.join(map(str, p.values()))}" for k, p in STREAM_FAULTS])
@sync
async def test_every_stream_fault_ends_in_speech_through_the_upload(
        tmp_path: Path, cloud: FakeCloud, realtime: FakeRealtime, kind: str,
        params: dict[str, Any]) -> None:
    if kind != "refused":
        realtime.fail(kind, **params)
    async with make_rig(tmp_path, cloud, prefer_local=False, **streaming(realtime)) as rig:
        if kind == "refused":
            with realtime.offline():
                result = await streamed_turn(rig, question())
        else:
            result = await streamed_turn(rig, question())
        output = rig.output()
        allowed = rig.connectivity.allow("stt")
    assert (result.transcript, result.transcript_engine) == (UPLOADED, "cloud")
    assert len(cloud.requests_for("stt")) == 1
    assert loud_seconds(output, rig.rate()) > 0.2
    [failover] = rig.named("failover")
    assert (failover.fields["stage"], failover.fields["from"], failover.fields["to"]) == (
        "stt", "stream", "upload")
    assert allowed  # a stream fault never opens the breaker the upload needs
    if kind != "refused":
        assert realtime.wait_closed(timeout=3).closed.is_set()


@sync
async def test_a_failing_stream_and_upload_still_end_in_speech_with_vosk(
        tmp_path: Path, cloud: FakeCloud, realtime: FakeRealtime) -> None:
    realtime.fail("error_event")
    cloud.fail("stt", "status", status=500)
    async with make_rig(tmp_path, cloud, **streaming(realtime)) as rig:
        result = await streamed_turn(rig, question())
        output = rig.output()
    assert result.transcript_engine == "vosk"
    assert [e.fields["to"] for e in rig.named("failover")] == ["upload", "vosk"]
    assert loud_seconds(output, rig.rate()) > 0.2


# --- the daemon -------------------------------------------------------------------------


def streaming_harness(tmp_path: Path, fake: FakeCloud, realtime: FakeRealtime,
                      audio: np.ndarray, extra: str = "") -> Harness:
    h = Harness(tmp_path, fake, audio, extra=NO_EARCONS, gpio=False)
    h.config.write_text(config_text(tmp_path, fake, NO_EARCONS + extra).replace(
        "[cloud]\n",
        f'[cloud]\nstt_streaming = true\nstt_streaming_url = "{realtime.url}"\n'))
    return h


@pytest.mark.slow
def test_the_daemon_streams_while_listening_and_answers_from_the_stream(
        tmp_path: Path, realtime: FakeRealtime) -> None:
    audio = wake_then("what time is it", after=4.0)

    async def scenario() -> None:
        with FakeCloud(transcript=UPLOADED, reply="It is noon.") as fake:
            async with streaming_harness(tmp_path, fake, realtime, audio) as h:
                done = await h.wait_event("turn_done", within=40)
                session = await asyncio.to_thread(realtime.wait_closed, 1, 10)
            assert fake.requests_for("stt") == []
        assert [e.fields["text"] for e in h.named("transcript")] == [STREAMED]
        assert done.fields["spoken"] is True
        assert h.named("transcript_partial")[-1].fields["text"] == STREAMED
        # Speculative turns (on by default) commit at the pause: one commit, used.
        assert session.events.count("input_audio_buffer.commit") == 1
        assert [e.fields["outcome"] for e in h.named("speculation")] == ["used"]
        assert h.named("failover") == []

    asyncio.run(asyncio.wait_for(scenario(), 90))


@pytest.mark.slow
def test_the_stream_commits_at_the_first_short_pause_not_at_the_end_of_the_turn(
        tmp_path: Path, realtime: FakeRealtime) -> None:
    """Without speculative turns the end of the turn (end_silence) finds the words
    already committed at the first short pause: one commit, of less audio than
    the utterance (which ends TAIL_SECONDS after the last voiced frame, the
    commit COMMIT_PAUSE after it, give or take a read), and no upload."""
    audio = wake_then("what time is it", after=4.0)

    async def scenario() -> None:
        with FakeCloud(transcript=UPLOADED, reply="It is noon.") as fake:
            async with streaming_harness(tmp_path, fake, realtime, audio,
                                         extra="[turn]\nspeculative = false\n") as h:
                await h.wait_event("turn_done", within=40)
                session = await asyncio.to_thread(realtime.wait_closed, 1, 10)
            assert fake.requests_for("stt") == []
        assert [e.fields["text"] for e in h.named("transcript")] == [STREAMED]
        assert h.named("speculation") == []
        assert session.events.count("input_audio_buffer.commit") == 1
        [utterance] = h.named("utterance")
        committed = len(session.segments[0]) * 2 // 3  # 24 kHz back to 16 kHz samples
        utterance_samples = utterance.fields["end_index"] - utterance.fields["start_index"]
        assert utterance_samples - committed >= 0.03 * 16000

    asyncio.run(asyncio.wait_for(scenario(), 90))


@pytest.mark.slow
def test_a_pause_mid_request_commits_twice_and_joins_the_transcript(
        tmp_path: Path, realtime: FakeRealtime) -> None:
    audio = np.concatenate([silence(1.0), piper("hey jarvis"), silence(0.15),
                            piper("Set a timer for"), silence(0.35), piper("ten minutes."),
                            silence(3.0)])
    realtime.queue_transcripts("set a timer for", "ten minutes")

    async def scenario() -> None:
        with FakeCloud(transcript=UPLOADED) as fake:
            async with streaming_harness(tmp_path, fake, realtime, audio) as h:
                await h.wait_event("turn_done", within=40)
                timers = h.daemon.timers.remaining()
                session = await asyncio.to_thread(realtime.wait_closed, 1, 10)
            assert fake.requests_for("stt") == []
        assert [t.duration for t in timers] == [600.0]
        assert [e.fields["text"] for e in h.named("transcript")] == [
            "set a timer for ten minutes"]
        assert session.events.count("input_audio_buffer.commit") == 2
        assert h.named("speculation")[0].fields["outcome"] == "wasted"

    asyncio.run(asyncio.wait_for(scenario(), 90))


@pytest.mark.slow
def test_the_daemon_falls_back_to_the_upload_when_the_stream_breaks(
        tmp_path: Path, realtime: FakeRealtime) -> None:
    audio = wake_then("what is the weather like today", after=4.0)
    realtime.fail("reset_mid", after=10)

    async def scenario() -> None:
        with FakeCloud(transcript=UPLOADED, reply="Sunny.") as fake:
            async with streaming_harness(tmp_path, fake, realtime, audio) as h:
                done = await h.wait_event("turn_done", within=40)
                await asyncio.to_thread(realtime.wait_closed, 1, 10)
            assert len(fake.requests_for("stt")) >= 1
        assert [e.fields["text"] for e in h.named("transcript")] == [UPLOADED]
        assert done.fields["spoken"] is True
        assert {e.fields["from"] for e in h.named("failover")} == {"stream"}

    asyncio.run(asyncio.wait_for(scenario(), 90))


@pytest.mark.slow
def test_no_speech_after_the_wake_word_closes_the_stream_without_a_commit(
        tmp_path: Path, realtime: FakeRealtime) -> None:
    audio = np.concatenate([silence(1.0), piper("hey jarvis"), silence(4.0)])

    async def scenario() -> None:
        with FakeCloud() as fake:
            async with streaming_harness(tmp_path, fake, realtime, audio) as h:
                await h.wait_event("wake")
                session = await asyncio.to_thread(realtime.wait_closed, 1, 20)
                assert h.named("utterance") == []
        assert "input_audio_buffer.append" in session.events
        assert "input_audio_buffer.commit" not in session.events
        assert h.named("transcript_partial") == []

    asyncio.run(asyncio.wait_for(scenario(), 90))


@sync
async def test_a_provider_without_realtime_is_asked_again_only_much_later(
        tmp_path: Path, cloud: FakeCloud, realtime: FakeRealtime,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(realtime_module, "ASK_AGAIN_SECONDS", 0.3)  # ten minutes, shortened
    realtime.fail("status", status=404)
    client = RealtimeSTT(CloudSettings(stt_streaming_url=realtime.url), Secret("sk-test-key"))
    with pytest.raises(SttCloudError, match="HTTP 404"):
        await client.open()
    assert not client.offered
    assert "no Realtime transcription" in caplog.text
    await asyncio.sleep(0.35)
    assert client.offered  # later, it asks again
    # A refused key or a server error is a fault, not a missing endpoint: asked every turn.
    for status in (401, 500):
        other = RealtimeSTT(CloudSettings(stt_streaming_url=realtime.url), Secret("sk-x"))
        realtime.fail("status", status=status)
        with pytest.raises(SttCloudError):
            await other.open()
        assert other.offered
    assert len(realtime.sessions) == 3


@pytest.mark.slow
def test_the_daemon_stops_streaming_to_a_provider_without_realtime(
        tmp_path: Path, realtime: FakeRealtime) -> None:
    audio = np.concatenate([wake_then("what time is it", after=4.0),
                            wake_then("what is the weather like today", after=4.0)])
    realtime.fail("status", status=404, times=None)

    async def scenario() -> None:
        with FakeCloud(transcript=UPLOADED, reply="Sunny.") as fake:
            async with streaming_harness(tmp_path, fake, realtime, audio) as h:
                await h.wait_event("turn_done", count=2, within=60)
            assert len(fake.requests_for("stt")) == 2
        assert [e.fields["spoken"] for e in h.named("turn_done")] == [True, True]
        # One handshake and one failover, on the first turn; the second uploads at once.
        assert len(realtime.sessions) == 1
        assert len(h.named("failover")) == 1

    asyncio.run(asyncio.wait_for(scenario(), 120))
