"""CloudSTT against the fake cloud: what is uploaded, and every fault typed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx2
import numpy as np
import pytest

from edge_agent.cloud import CloudClient, CloudSTT
from edge_agent.cloud.client import MAX_BODY_BYTES
from edge_agent.config import Secret
from edge_agent.errors import SttCloudError
from edge_agent.testbed.fakecloud import FakeCloud, Latency, run
from edge_agent.tools.voices import piper

KEY = Secret("sk-test-stt-0123456789")
FAST = {"stt": 2.0, "connect": 1.0}


async def transcribe(cloud: FakeCloud, audio: np.ndarray, **settings: Any) -> str:
    settings.setdefault("timeouts", FAST)
    async with CloudClient(cloud.settings(**settings), KEY) as client:
        return await CloudSTT(client).transcribe(audio)


def failure(cloud: FakeCloud, **settings: Any) -> SttCloudError:
    with pytest.raises(SttCloudError) as caught:
        run(transcribe(cloud, np.zeros(8000, np.int16), **settings))
    return caught.value


@pytest.mark.slow
def test_real_speech_is_uploaded_as_16k_mono_wav(fake_cloud: FakeCloud) -> None:
    speech = piper("What is the weather like today?")
    fake_cloud.transcript = "  what is the weather like today \n"
    text = run(transcribe(fake_cloud, speech, stt_model="whisper-large-v3", language="de"))
    assert text == "what is the weather like today"
    record = fake_cloud.requests_for("stt")[0]
    assert record.audio_format == {"filename": "utterance.wav", "content_type": "audio/wav",
                                   "rate": 16000, "channels": 1, "sample_width": 2}
    np.testing.assert_array_equal(record.audio, speech)
    assert record.form["model"] == "whisper-large-v3"
    assert record.form["language"] == "de"


def test_the_transcript_can_depend_on_the_audio(fake_cloud: FakeCloud) -> None:
    fake_cloud.transcript = lambda audio: "loud" if np.abs(audio).max() > 1000 else ""
    loud = (np.sin(np.arange(16000) / 5) * 8000).astype(np.int16)
    assert run(transcribe(fake_cloud, loud)) == "loud"
    assert run(transcribe(fake_cloud, np.zeros(16000, np.int16))) == ""


def test_no_language_hint_when_unset(fake_cloud: FakeCloud) -> None:
    run(transcribe(fake_cloud, np.zeros(1600, np.int16), language=""))
    assert "language" not in fake_cloud.requests_for("stt")[0].form


def test_empty_audio_sends_nothing(fake_cloud: FakeCloud) -> None:
    assert run(transcribe(fake_cloud, np.zeros(0, np.int16))) == ""
    assert fake_cloud.requests_for("stt") == []


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_mean_offline(fake_cloud: FakeCloud, status: int) -> None:
    fake_cloud.fail("stt", "status", status=status)
    error = failure(fake_cloud)
    assert error.offline and error.stage == "stt"


def test_rate_limit_carries_retry_after(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("stt", "rate_limit", retry_after=2.5)
    error = failure(fake_cloud)
    assert error.retry_after == 2.5 and not error.offline


def test_a_bad_request_is_not_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("stt", "status", status=400)
    error = failure(fake_cloud)
    assert not error.offline and "400" in error.reason


def test_refused_connection_is_offline(fake_cloud: FakeCloud) -> None:
    with fake_cloud.offline():
        assert failure(fake_cloud).offline


def test_stall_times_out_offline_and_closes_the_request(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("stt", "stall_first", seconds=60)
    error = failure(fake_cloud, timeouts={"stt": 0.3})
    assert error.offline and "no transcript" in error.reason
    assert fake_cloud.requests_for("stt")[0].wait().closed_early


def test_the_stt_timeout_covers_the_whole_request(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(stt=5)
    assert failure(fake_cloud, timeouts={"stt": 0.3}).offline


@pytest.mark.parametrize("kind", ["stall_mid", "reset_mid"])
def test_a_broken_body_is_an_error(fake_cloud: FakeCloud, kind: str) -> None:
    fake_cloud.fail("stt", kind, seconds=60)
    error = failure(fake_cloud, timeouts={"stt": 0.5})
    assert error.stage == "stt"


def test_malformed_json_is_an_error_with_a_reason(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("stt", "malformed_json")
    error = failure(fake_cloud)
    assert "malformed" in error.reason and not error.offline


def test_cancelling_closes_the_upload(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(stt=60)

    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(timeouts={"stt": 60}), KEY) as client:
            task = asyncio.create_task(CloudSTT(client).transcribe(np.ones(16000, np.int16)))
            await asyncio.to_thread(fake_cloud.wait_for_request, "stt")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
            record = await asyncio.to_thread(fake_cloud.requests_for("stt")[0].wait, 5)
            assert record.closed_early

    run(scenario())


def test_a_captive_portal_page_means_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("stt", "captive_portal")
    error = failure(fake_cloud)
    assert error.offline and "web page" in error.reason


def test_a_transcript_past_the_body_bound_is_malformed(fake_cloud: FakeCloud) -> None:
    fake_cloud.transcript = "word " * (MAX_BODY_BYTES // 5)
    error = failure(fake_cloud)
    assert "malformed" in error.reason and f"{MAX_BODY_BYTES} bytes" in error.reason


@pytest.mark.parametrize("body", [b"[]", b'{"transcript": "hi"}', b'{"text": 5}', b"null"])
def test_an_answer_without_text_is_malformed(fake_cloud: FakeCloud, body: bytes) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "application/json"})

    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(), KEY,
                               transport=httpx2.MockTransport(answer)) as client:
            await CloudSTT(client).transcribe(np.zeros(1600, np.int16))

    with pytest.raises(SttCloudError, match="malformed"):
        run(scenario())
