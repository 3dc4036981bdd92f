"""CloudClient: one kept-alive connection, prewarm and probe that never raise,
Retry-After parsing, and the API key kept out of URLs, logs and errors."""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable

import httpx2
import numpy as np
import pytest

from edge_agent.cloud import CloudClient, CloudLLM, CloudSTT, CloudTTS
from edge_agent.cloud.client import retry_after
from edge_agent.config import CloudSettings, CloudTimeouts, Secret
from edge_agent.errors import CloudError
from edge_agent.intents.tools import Tool, Toolbox
from edge_agent.testbed.fakecloud import FakeCloud, ToolCall, run

KEY = Secret("sk-live-DO-NOT-LEAK-4f9a1c")


def test_prewarm_opens_the_connection_the_turn_then_uses(fake_cloud: FakeCloud) -> None:
    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(), KEY) as client:
            await client.prewarm()
            await CloudSTT(client).transcribe(np.zeros(1600, np.int16))
            assert [c async for c in CloudLLM(client).reply([], Toolbox())]
            assert [c async for c in CloudTTS(client).synthesize("hi")]

    run(scenario())
    stages = [r.stage for r in fake_cloud.requests]
    assert stages == ["models", "stt", "llm", "tts"]
    assert len({r.client_port for r in fake_cloud.requests}) == 1


def test_prewarm_never_raises(fake_cloud: FakeCloud) -> None:
    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(timeouts={"connect": 0.3}), KEY) as client:
            with fake_cloud.offline():
                await client.prewarm()
            fake_cloud.fail("models", "stall_first", seconds=60)
            await client.prewarm()

    run(scenario())


def test_probe_says_whether_the_service_answers(fake_cloud: FakeCloud) -> None:
    async def scenario() -> list[bool]:
        async with CloudClient(fake_cloud.settings(timeouts={"connect": 0.3}), KEY) as client:
            results = [await client.probe()]
            with fake_cloud.offline():
                results.append(await client.probe())
            fake_cloud.fail("models", "status", status=503)
            results.append(await client.probe())
            fake_cloud.fail("models", "status", status=401)  # reachable, but useless
            results.append(await client.probe())
            fake_cloud.fail("models", "stall_first", seconds=60)
            results.append(await client.probe())
            fake_cloud.fail("models", "captive_portal")
            results.append(await client.probe())
            fake_cloud.fail("models", "status", status=404)  # a server without /models
            results.append(await client.probe())
            return results

    assert run(scenario()) == [True, False, False, False, False, False, True]


def test_check_names_the_cause(fake_cloud: FakeCloud) -> None:
    async def cause(client: CloudClient) -> str:
        try:
            await client.check()
        except CloudError as exc:
            assert exc.offline
            return exc.cause
        return "ok"

    async def scenario() -> list[str]:
        async with CloudClient(fake_cloud.settings(timeouts={"connect": 0.3}), KEY) as client:
            causes = [await cause(client)]
            fake_cloud.fail("models", "status", status=401)
            causes.append(await cause(client))
            fake_cloud.fail("models", "status", status=403)
            causes.append(await cause(client))
            fake_cloud.fail("models", "status", status=502)
            causes.append(await cause(client))
            fake_cloud.fail("models", "stall_first", seconds=60)
            causes.append(await cause(client))
            fake_cloud.fail("models", "captive_portal")
            causes.append(await cause(client))
            with fake_cloud.offline():
                causes.append(await cause(client))
        return causes

    assert run(scenario()) == ["ok", "key_refused", "key_refused", "service", "timeout",
                               "portal", "refused"]


def test_a_name_that_does_not_resolve_is_a_dns_cause() -> None:
    async def scenario() -> CloudError:
        settings = CloudSettings(base_url="http://edge-agent-test.invalid/v1",
                                 timeouts=CloudTimeouts(connect=5.0))
        async with CloudClient(settings, KEY) as client:
            with pytest.raises(CloudError) as caught:
                await client.check()
            return caught.value

    error = run(scenario())
    assert error.offline and error.cause in ("dns", "timeout")  # timeout: a resolver that hangs


def test_without_a_key_no_request_goes_out(fake_cloud: FakeCloud) -> None:
    async def scenario() -> list[CloudError]:
        errors = []
        async with CloudClient(fake_cloud.settings(), None) as client:
            assert not await client.probe()
            for call in (lambda: CloudSTT(client).transcribe(np.zeros(1600, np.int16)),
                         lambda: anext(CloudLLM(client).reply([{"role": "user", "content": "x"}])),
                         lambda: anext(CloudTTS(client).synthesize("hi")),
                         client.check):
                try:
                    await call()
                except CloudError as exc:
                    errors.append(exc)
        return errors

    errors = run(scenario())
    assert [(e.stage, e.cause, e.offline) for e in errors] == [
        ("stt", "no_key", True), ("llm", "no_key", True), ("tts", "no_key", True),
        ("cloud", "no_key", True)]
    assert fake_cloud.requests == []


def test_the_key_goes_only_in_the_authorization_header(
        fake_cloud: FakeCloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_cloud.queue_replies([ToolCall("get_time")])
    tools = Toolbox([Tool("get_time", "the time", lambda: "noon")])
    errors: list[CloudError] = []

    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(), KEY) as client:
            await client.prewarm()
            await CloudSTT(client).transcribe(np.zeros(1600, np.int16))
            [c async for c in CloudLLM(client).reply([{"role": "user", "content": "x"}], tools)]
            [c async for c in CloudTTS(client).synthesize("hi")]
            fake_cloud.fail("llm", "status", status=401)
            try:
                [c async for c in CloudLLM(client).reply([], tools)]
            except CloudError as exc:
                errors.append(exc)

    run(scenario())
    assert len(fake_cloud.requests) == 6
    for record in fake_cloud.requests:
        assert record.headers["authorization"] == f"Bearer {KEY}"
        others = {k: v for k, v in record.headers.items() if k != "authorization"}
        assert KEY not in repr(others)
        assert KEY not in record.path + record.query
        assert KEY.encode() not in record.body
    assert errors and KEY not in repr(errors[0]) and KEY not in str(errors[0])
    assert caplog.records  # the libraries did log at debug level...
    assert KEY not in caplog.text  # ...but never the key


def test_the_key_is_not_in_the_client_repr(fake_cloud: FakeCloud) -> None:
    async def scenario() -> str:
        async with CloudClient(fake_cloud.settings(), KEY) as client:
            return repr(vars(client))

    assert KEY not in run(scenario())


def _response(**headers: str) -> httpx2.Response:
    return httpx2.Response(429, headers=headers)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "-3"}, 0.0),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(_response(**headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after(_response(**{"retry-after": when})) <= 31


def test_prewarm_can_skip_a_recently_used_connection(fake_cloud: FakeCloud) -> None:
    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(), KEY) as client:
            await client.prewarm(if_idle_for=60)  # never used: goes out
            await client.prewarm(if_idle_for=60)  # just used: skipped
            await client.prewarm()                # unconditional

    run(scenario())
    assert [r.stage for r in fake_cloud.requests] == ["models", "models"]


def test_a_tls_failure_is_offline(fake_cloud: FakeCloud) -> None:
    # https:// to a plain-HTTP port: the handshake fails as with a broken TLS proxy.
    settings = fake_cloud.settings(base_url=fake_cloud.base_url.replace("http:", "https:"))

    async def scenario() -> None:
        async with CloudClient(settings, KEY) as client:
            await CloudSTT(client).transcribe(np.zeros(1600, np.int16))

    with pytest.raises(CloudError) as caught:
        run(scenario())
    assert caught.value.offline and "reach" in caught.value.reason


def test_prewarm_reopens_after_an_abandoned_stream(fake_cloud: FakeCloud) -> None:
    # A barge-in closes a stream half read, which costs its connection: the next
    # wake word's prewarm must open a new one rather than trust the recent use.
    fake_cloud.reply = "one two three four five six"

    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(), KEY) as client:
            llm = CloudLLM(client)
            assert [d async for d in llm.reply([])]
            await client.prewarm(if_idle_for=60)  # finished stream: connection kept, skipped
            async with contextlib.aclosing(llm.reply([])) as deltas:
                async for _ in deltas:
                    break
            await client.prewarm(if_idle_for=60)

    run(scenario())
    assert [r.stage for r in fake_cloud.requests] == ["llm", "llm", "models"]


@pytest.fixture
def tls_cloud():
    with FakeCloud(tls=True) as cloud:
        yield cloud


def test_over_tls_the_handshake_is_paid_once(
        tls_cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cloud.cert_file))

    async def scenario() -> None:
        async with CloudClient(tls_cloud.settings(), KEY) as client:
            await client.prewarm()
            for _ in range(3):
                await CloudSTT(client).transcribe(np.zeros(1600, np.int16))
                assert [c async for c in CloudLLM(client).reply([])]
                assert [c async for c in CloudTTS(client).synthesize("hi")]

    run(scenario())
    assert tls_cloud.base_url.startswith("https://")
    assert len(tls_cloud.requests) == 10
    assert len({r.client_port for r in tls_cloud.requests}) == 1


def test_an_untrusted_certificate_is_offline(tls_cloud: FakeCloud) -> None:
    async def scenario() -> None:
        async with CloudClient(tls_cloud.settings(), KEY) as client:
            assert not await client.probe()
            await CloudSTT(client).transcribe(np.zeros(1600, np.int16))

    with pytest.raises(CloudError) as caught:
        run(scenario())
    assert caught.value.offline and "CERTIFICATE_VERIFY_FAILED" in caught.value.reason
    assert tls_cloud.requests == []


def _stt_error(answer: Callable[[httpx2.Request], httpx2.Response]) -> CloudError:
    """The STT stage's error when ``answer`` answers its request, in memory."""
    async def scenario() -> CloudError:
        async with CloudClient(CloudSettings(), KEY,
                               transport=httpx2.MockTransport(answer)) as client:
            with pytest.raises(CloudError) as caught:
                await CloudSTT(client).transcribe(np.zeros(1600, np.int16))
            return caught.value

    return run(scenario())


def _rejected(status: int, body: bytes) -> CloudError:
    return _stt_error(lambda request: httpx2.Response(
        status, content=body, headers={"content-type": "application/json"}))


@pytest.mark.parametrize(("body", "said"), [
    (b'{"error": {"message": "Invalid file format.", "type": "invalid_request_error"}}',
     "Invalid file format."),                                      # OpenAI's shape
    (b'{"error": "model not found"}', "model not found"),           # other servers'
    (b'{"detail": "Unsupported language"}', "Unsupported language"),
    (b"<html>teapot</html>", "Bad Request"),                        # no JSON: the phrase
    (b'{"error": {"message": "' + b"x" * 500 + b'"}}', "x" * 120),  # cut short
])
def test_a_rejected_request_says_what_the_server_said(body: bytes, said: str) -> None:
    error = _rejected(400, body)
    assert error.reason.endswith(f"request rejected (400: {said})")
    assert not error.offline


def test_the_key_echoed_in_an_error_message_is_masked() -> None:
    error = _rejected(400, f'{{"error": {{"message": "bad key {KEY} for model"}}}}'.encode())
    assert KEY not in str(error) and "bad key *** for model" in error.reason


def test_an_endless_error_body_is_not_read_to_its_end() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536

    error = _stt_error(lambda request: httpx2.Response(400, content=endless()))
    assert "request rejected (400: Bad Request)" in error.reason
