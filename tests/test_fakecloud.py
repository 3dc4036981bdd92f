"""The fake cloud itself, spoken to with a plain HTTP client: it must look like the
OpenAI API on the wire, or the engine tests prove nothing."""

from __future__ import annotations

import io
import json
import time
import wave

import httpx2
import numpy as np
import pytest

from edge_agent.testbed.fakecloud import TTS_RATE, FakeCloud, Latency, ToolCall, tokens, tone

AUTH = {"Authorization": "Bearer sk-fake"}


def sse_events(response: httpx2.Response) -> list[str]:
    """The data of each server-sent event, in order."""
    events = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(block[len("data: "):])
    return events


def chat(http: httpx2.Client, **body) -> httpx2.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "stream": True} | body
    return http.post("/chat/completions", json=body, headers=AUTH)


def wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.fixture
def http(fake_cloud: FakeCloud):
    with httpx2.Client(base_url=fake_cloud.base_url, timeout=10) as client:
        yield client


def test_models_lists_the_default_models(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    response = http.get("/models", headers=AUTH)
    assert response.status_code == 200
    assert "gpt-4o-mini" in [m["id"] for m in response.json()["data"]]
    assert fake_cloud.requests[-1].stage == "models"


def test_chat_streams_openai_chunks_then_done(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.reply = "It is 3.5 degrees. Wear a coat."
    response = chat(http)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == fake_cloud.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(chunks) == len(tokens(fake_cloud.reply)) + 2  # role, tokens, finish


def test_chat_scripts_tool_calls_with_fragmented_arguments(
        fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.queue_replies([ToolCall("set_timer", {"seconds": 300}, id="call_a"),
                              ToolCall("get_time")])
    chunks = [json.loads(e) for e in sse_events(chat(http))[:-1]]
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for call in chunk["choices"][0]["delta"].get("tool_calls") or []:
            entry = calls.setdefault(call["index"], {"name": "", "arguments": "", "id": ""})
            entry["id"] += call.get("id", "")
            entry["name"] += call.get("function", {}).get("name", "")
            entry["arguments"] += call.get("function", {}).get("arguments", "")
    assert calls[0] == {"id": "call_a", "name": "set_timer", "arguments": '{"seconds": 300}'}
    assert calls[1]["name"] == "get_time"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # The queue is used up: the next request gets the default reply.
    assert "content" in sse_events(chat(http))[1]


def test_reply_can_depend_on_the_request(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.reply = lambda body: f"You said {body['messages'][-1]['content']}."
    chunks = [json.loads(e) for e in sse_events(chat(http))[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == (
        "You said hi.")
    assert fake_cloud.requests[-1].messages == [{"role": "user", "content": "hi"}]
    assert fake_cloud.requests[-1].model == "gpt-4o-mini"


def test_transcription_decodes_and_records_the_upload(
        fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    samples = (np.arange(8000) % 200 - 100).astype(np.int16)
    fake_cloud.transcript = lambda audio: f"{len(audio)} samples"
    fake_cloud.queue_transcripts("scripted first")
    texts = []
    for _ in range(2):
        response = http.post("/audio/transcriptions", headers=AUTH,
                             files={"file": ("a.wav", wav(samples), "audio/wav")},
                             data={"model": "whisper-1", "language": "en"})
        texts.append(response.json()["text"])
    assert texts == ["scripted first", "8000 samples"]
    record = fake_cloud.requests[-1]
    assert record.model == "whisper-1"
    assert record.form["language"] == "en"
    assert record.audio_format == {"filename": "a.wav", "content_type": "audio/wav",
                                   "rate": 16000, "channels": 1, "sample_width": 2}
    np.testing.assert_array_equal(record.audio, samples)


def test_transcription_rejects_audio_that_is_no_wav(
        fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    response = http.post("/audio/transcriptions", headers=AUTH,
                         files={"file": ("a.mp3", b"ID3\x04" + bytes(100), "audio/mpeg")},
                         data={"model": "whisper-1"})
    assert response.status_code == 400
    assert "error" in fake_cloud.requests[-1].audio_format


def test_speech_streams_chunked_pcm_as_long_as_the_text(
        fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.tts_chunk_seconds = 0.02
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello there, friend.",
            "response_format": "pcm"}
    with http.stream("POST", "/audio/speech", json=body, headers=AUTH) as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert response.headers["transfer-encoding"] == "chunked"
        data = b"".join(response.iter_bytes())
    expected = fake_cloud.speech(body["input"])
    assert len(data) == expected.size * 2
    np.testing.assert_array_equal(np.frombuffer(data, "<i2"), expected)
    longer = fake_cloud.speech(body["input"] * 3)
    assert longer.size > 2 * expected.size
    assert fake_cloud.requests[-1].json["response_format"] == "pcm"


def test_latency_spaces_the_tokens(fake_cloud: FakeCloud) -> None:
    # Lower bounds only: sleeps guarantee them however loaded the machine is.
    fake_cloud.latency = Latency(llm_first_token=0.2, llm_tokens_per_second=20)
    fake_cloud.reply = "one two three four five"
    arrivals = []
    with httpx2.Client(base_url=fake_cloud.base_url, timeout=10) as http:
        start = time.monotonic()
        body = {"model": "m", "messages": [], "stream": True}
        with http.stream("POST", "/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 5
    assert arrivals[0] >= 0.2
    assert arrivals[-1] - arrivals[0] >= 4 / 20 * 0.9


@pytest.mark.parametrize("status", [500, 503, 401])
def test_status_faults_answer_with_a_json_error(
        fake_cloud: FakeCloud, http: httpx2.Client, status: int) -> None:
    fake_cloud.fail("llm", "status", status=status)
    response = chat(http)
    assert response.status_code == status
    assert "error" in response.json()
    assert chat(http).status_code == 200  # times=1: the next request is served


def test_rate_limit_sends_retry_after(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.fail("tts", "rate_limit", retry_after=7, times=None)
    for _ in range(3):
        response = http.post("/audio/speech", json={"input": "x", "response_format": "pcm"})
        assert (response.status_code, response.headers["retry-after"]) == (429, "7")
    fake_cloud.clear_faults()
    assert http.post("/audio/speech", json={"input": "x", "response_format": "pcm"}
                     ).status_code == 200


def test_faults_apply_only_to_their_stage(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.fail("stt", "status", status=500)
    assert chat(http).status_code == 200
    assert fake_cloud.requests[-1].fault is None
    with pytest.raises(ValueError, match="stage"):
        fake_cloud.fail("vision", "status")
    with pytest.raises(ValueError, match="fault"):
        fake_cloud.fail("llm", "explode")


def test_disconnect_closes_without_a_response(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.fail("llm", "disconnect")
    with pytest.raises(httpx2.RemoteProtocolError):
        chat(http)
    assert chat(http).status_code == 200


def test_stall_before_the_first_byte_notices_the_client_leaving(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "stall_first", seconds=60)
    with httpx2.Client(base_url=fake_cloud.base_url, timeout=0.3) as http, pytest.raises(
            httpx2.ReadTimeout):
        chat(http)
    record = fake_cloud.requests_for("llm")[-1].wait()
    assert record.closed_early and record.status is None


@pytest.mark.parametrize("kind", ["reset_mid", "stall_mid"])
def test_mid_stream_faults_send_some_tokens_first(fake_cloud: FakeCloud, kind: str) -> None:
    fake_cloud.reply = "one two three four"
    fake_cloud.fail("llm", kind, after=2, seconds=60)
    received = []
    body = {"model": "m", "messages": [], "stream": True}
    with (httpx2.Client(base_url=fake_cloud.base_url, timeout=0.5) as http,
          pytest.raises(httpx2.TransportError),
          http.stream("POST", "/chat/completions", json=body) as response):
        received.extend(response.iter_lines())
    text = "".join(received)
    assert '"one"' in text and '" two"' in text and "three" not in text
    record = fake_cloud.requests_for("llm")[-1].wait()
    assert record.status == 200
    assert record.closed_early is (kind == "stall_mid")  # the client gave up on the stall


@pytest.mark.parametrize("kind", ["malformed_sse", "malformed_json"])
def test_malformed_events_are_not_json(
        fake_cloud: FakeCloud, http: httpx2.Client, kind: str) -> None:
    fake_cloud.fail("llm", kind, after=1)
    events = sse_events(chat(http))
    bad = [e for e in events if e != "[DONE]" and not _is_json(e)]
    assert len(bad) == 1


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_malformed_transcript_json(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.fail("stt", "malformed_json")
    response = http.post("/audio/transcriptions",
                         files={"file": ("a.wav", wav(np.zeros(1600)), "audio/wav")},
                         data={"model": "whisper-1"})
    assert response.status_code == 200
    assert not _is_json(response.text)


@pytest.mark.parametrize(("variant", "ctype", "magic"),
                         [("wav", "audio/wav", b"RIFF"), ("mp3", "audio/mpeg", b"ID3")])
def test_wrong_audio_format(fake_cloud: FakeCloud, http: httpx2.Client,
                            variant: str, ctype: str, magic: bytes) -> None:
    fake_cloud.fail("tts", "wrong_format", variant=variant)
    response = http.post("/audio/speech", json={"input": "hello", "response_format": "pcm"})
    assert response.headers["content-type"] == ctype
    assert response.content.startswith(magic)


def test_a_stream_closed_by_the_client_is_recorded(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(tts_rtf=1.0)
    fake_cloud.speech = lambda text: tone(30.0)
    with httpx2.Client(base_url=fake_cloud.base_url, timeout=10) as http:
        body = {"input": "long", "response_format": "pcm"}
        with http.stream("POST", "/audio/speech", json=body) as response:
            first = next(response.iter_bytes())
    assert first
    record = fake_cloud.requests_for("tts")[-1].wait()
    assert record.closed_early


def test_a_complete_exchange_is_not_closed_early(fake_cloud: FakeCloud,
                                                 http: httpx2.Client) -> None:
    chat(http)
    assert not fake_cloud.requests[-1].wait().closed_early


def test_offline_refuses_then_serves_again_on_the_same_port(fake_cloud: FakeCloud) -> None:
    port = fake_cloud.port
    with fake_cloud.offline(), pytest.raises(httpx2.ConnectError):
        httpx2.get(fake_cloud.base_url + "/models", timeout=2)
    assert fake_cloud.port == port
    assert httpx2.get(fake_cloud.base_url + "/models", timeout=5).status_code == 200


def test_offline_drops_kept_alive_connections(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    assert http.get("/models").status_code == 200  # the connection is now kept alive
    with fake_cloud.offline(), pytest.raises(httpx2.TransportError):
        http.get("/models")


def test_headers_are_recorded_verbatim(fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    http.get("/models?x=1", headers=AUTH)
    record = fake_cloud.requests[-1]
    assert record.headers["authorization"] == "Bearer sk-fake"
    assert record.query == "x=1"


def test_settings_point_at_the_server(fake_cloud: FakeCloud) -> None:
    settings = fake_cloud.settings(llm_model="m", timeouts={"llm_idle": 0.5})
    assert settings.base_url == f"http://127.0.0.1:{fake_cloud.port}/v1"
    assert (settings.llm_model, settings.timeouts.llm_idle) == ("m", 0.5)


def test_tone_is_24k_int16() -> None:
    audio = tone(0.5)
    assert audio.dtype == np.int16 and audio.size == TTS_RATE // 2
    assert 15000 < np.abs(audio).max() <= 16000


def test_captive_portal_answers_any_endpoint_with_a_page(
        fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.fail("models", "captive_portal")
    response = http.get("/models")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_reset_forgets_requests_scripts_and_faults(
        fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.queue_replies("queued")
    fake_cloud.fail("llm", "status", times=None)
    http.get("/models")
    fake_cloud.reset()
    assert fake_cloud.requests == []
    chunks = [json.loads(e) for e in sse_events(chat(http))[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == fake_cloud.reply


def test_chat_without_stream_returns_the_whole_completion(
        fake_cloud: FakeCloud, http: httpx2.Client) -> None:
    fake_cloud.queue_replies("Plain answer.", [ToolCall("get_time", {"tz": "UTC"})])
    first, second = (chat(http, stream=False).json() for _ in range(2))
    assert first["object"] == "chat.completion"
    assert first["choices"][0]["message"]["content"] == "Plain answer."
    call = second["choices"][0]["message"]["tool_calls"][0]["function"]
    assert (call["name"], json.loads(call["arguments"])) == ("get_time", {"tz": "UTC"})
    assert second["choices"][0]["finish_reason"] == "tool_calls"
