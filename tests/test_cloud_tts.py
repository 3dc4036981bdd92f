"""CloudTTS against the fake cloud: streamed whole-sample PCM, wrong formats
refused, every fault typed, cancellation closes the stream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
import pytest

from edge_agent.cloud import CloudClient, CloudTTS
from edge_agent.config import Secret
from edge_agent.errors import TtsCloudError
from edge_agent.testbed.fakecloud import TTS_RATE, FakeCloud, Latency, run, tone

KEY = Secret("sk-test-tts-0123456789")
FAST = {"tts_first_byte": 2.0, "connect": 1.0}


async def chunks(cloud: FakeCloud, text: str = "Hello there.", **settings: Any) -> list[bytes]:
    settings.setdefault("timeouts", FAST)
    async with CloudClient(cloud.settings(**settings), KEY) as client:
        return [c async for c in CloudTTS(client).synthesize(text)]


def failure(cloud: FakeCloud, **settings: Any) -> TtsCloudError:
    with pytest.raises(TtsCloudError) as caught:
        run(chunks(cloud, **settings))
    return caught.value


def test_pcm_streams_in_whole_samples(fake_cloud: FakeCloud) -> None:
    fake_cloud.tts_chunk_seconds = 0.01  # many chunks, each an odd number of bytes on the wire
    received = run(chunks(fake_cloud, "Hello there, how are you?", tts_model="tts-x",
                          tts_voice="nova"))
    assert len(received) > 5
    assert all(len(c) % 2 == 0 for c in received)
    audio = np.frombuffer(b"".join(received), "<i2")
    np.testing.assert_array_equal(audio, fake_cloud.speech("Hello there, how are you?"))
    body = fake_cloud.requests_for("tts")[0].json
    assert body == {"model": "tts-x", "voice": "nova", "input": "Hello there, how are you?",
                    "response_format": "pcm"}
    assert CloudTTS.sample_rate == TTS_RATE


def test_audio_arrives_before_synthesis_ends(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(tts_rtf=0.5)
    fake_cloud.speech = lambda text: tone(6.0)  # three seconds of synthesis

    async def scenario() -> bool:
        async with (CloudClient(fake_cloud.settings(timeouts=FAST), KEY) as client,
                    contextlib.aclosing(CloudTTS(client).synthesize("x")) as audio):
            async for _ in audio:
                return not fake_cloud.requests_for("tts")[0].done.is_set()
        return False

    assert run(scenario())


@pytest.mark.parametrize(("variant", "kind"), [("wav", "audio/wav"), ("mp3", "audio/mpeg"),
                                               ("mislabelled", "audio/mpeg")])
def test_a_wrong_audio_format_is_refused(fake_cloud: FakeCloud, variant: str, kind: str) -> None:
    fake_cloud.fail("tts", "wrong_format", variant=variant)
    error = failure(fake_cloud)
    assert "wrong audio format" in error.reason and kind in error.reason
    assert not error.offline


def test_container_bytes_are_refused_even_as_pcm(fake_cloud: FakeCloud) -> None:
    # A server that labels WAV as PCM: the RIFF header gives it away.
    header = np.frombuffer(b"RIFF\x24\x00\x00\x00WAVE", "<i2")
    fake_cloud.speech = lambda text: np.concatenate([header, tone(0.1)])
    assert "WAV" in failure(fake_cloud).reason


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_mean_offline(fake_cloud: FakeCloud, status: int) -> None:
    fake_cloud.fail("tts", "status", status=status)
    error = failure(fake_cloud)
    assert error.offline and error.stage == "tts"


def test_rate_limit_carries_retry_after(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("tts", "rate_limit", retry_after=3)
    assert failure(fake_cloud).retry_after == 3.0


def test_refused_connection_is_offline(fake_cloud: FakeCloud) -> None:
    with fake_cloud.offline():
        assert failure(fake_cloud).offline


def test_stall_before_the_first_byte_is_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("tts", "stall_first", seconds=60)
    error = failure(fake_cloud, timeouts={"tts_first_byte": 0.3})
    assert error.offline and "no audio" in error.reason
    assert fake_cloud.requests_for("tts")[0].wait().closed_early


def test_stall_mid_stream_is_not_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("tts", "stall_mid", after=2, seconds=60)
    error = failure(fake_cloud, timeouts={"tts_first_byte": 0.3})
    assert not error.offline and "stalled" in error.reason
    assert fake_cloud.requests_for("tts")[0].wait().closed_early


def test_reset_mid_stream_is_not_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("tts", "reset_mid", after=2)
    error = failure(fake_cloud)
    assert not error.offline and "mid-stream" in error.reason


def test_cancelling_the_consumer_closes_the_stream(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(tts_rtf=1.0)
    fake_cloud.speech = lambda text: tone(30.0)

    async def scenario() -> None:
        started = asyncio.Event()

        async def play(tts: CloudTTS) -> None:
            async for _ in tts.synthesize("a very long answer"):
                started.set()

        async with CloudClient(fake_cloud.settings(timeouts=FAST), KEY) as client:
            task = asyncio.create_task(play(CloudTTS(client)))
            await asyncio.wait_for(started.wait(), 10)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
            record = await asyncio.to_thread(fake_cloud.requests_for("tts")[0].wait, 5)
            assert record.closed_early

    run(scenario())


def test_a_captive_portal_page_means_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("tts", "captive_portal")
    error = failure(fake_cloud)
    assert error.offline and "web page" in error.reason


def test_nothing_to_say_sends_nothing(fake_cloud: FakeCloud) -> None:
    assert run(chunks(fake_cloud, "  ")) == []
    assert fake_cloud.requests_for("tts") == []


def test_a_gap_shorter_than_the_budget_is_tolerated(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("tts", "stall_mid", after=1, seconds=0.3)
    audio = b"".join(run(chunks(fake_cloud, timeouts={"tts_first_byte": 3.0})))
    np.testing.assert_array_equal(np.frombuffer(audio, "<i2"), fake_cloud.speech("Hello there."))
