"""CloudLLM against the fake cloud: streamed deltas, tool calls, every fault typed,
and cancellation that closes the HTTP stream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx2
import pytest

from edge_agent.cloud import CloudClient, CloudLLM, sse
from edge_agent.cloud.llm import MAX_TOOL_ROUNDS
from edge_agent.config import CloudSettings, CloudTimeouts, Secret
from edge_agent.errors import LlmCloudError
from edge_agent.intents.tools import Tool, Toolbox
from edge_agent.testbed.fakecloud import FakeCloud, Latency, ToolCall, run

KEY = Secret("sk-test-llm-0123456789")
QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
FAST = {"llm_first_token": 2.0, "llm_idle": 1.0, "connect": 1.0}


def toolbox(log: list[tuple[str, dict]] | None = None) -> Toolbox:
    """Real tools: a clock with a fixed answer and a timer that records its arguments."""
    calls = log if log is not None else []

    def set_timer(seconds: int, label: str = "") -> str:
        calls.append(("set_timer", {"seconds": seconds, "label": label}))
        return f"timer set for {seconds} seconds"

    return Toolbox([
        Tool("get_time", "The current local time.", lambda: "ten past ten"),
        Tool("set_timer", "Start a countdown timer.", set_timer, {
            "type": "object", "required": ["seconds"],
            "properties": {"seconds": {"type": "integer"}, "label": {"type": "string"}}}),
    ])


async def collect(cloud: FakeCloud, tools: Toolbox | None = None, **settings: Any) -> list[str]:
    settings.setdefault("timeouts", FAST)
    async with CloudClient(cloud.settings(**settings), KEY) as client:
        return [d async for d in CloudLLM(client).reply(QUESTION, tools or Toolbox())]


def failure(cloud: FakeCloud, **settings: Any) -> LlmCloudError:
    with pytest.raises(LlmCloudError) as caught:
        run(collect(cloud, **settings))
    return caught.value


def test_deltas_stream_the_reply(fake_cloud: FakeCloud) -> None:
    fake_cloud.reply = "It is 3.5 degrees. Wear a coat."
    deltas = run(collect(fake_cloud, llm_model="small-model", max_tokens=42))
    assert len(deltas) > 3
    assert "".join(deltas) == fake_cloud.reply
    body = fake_cloud.requests_for("llm")[0].json
    assert body["model"] == "small-model"
    assert body["max_tokens"] == 42
    assert body["stream"] is True
    assert body["messages"] == QUESTION
    assert "tools" not in body  # none offered when the toolbox is empty


def test_a_tool_call_round_trips_through_the_toolbox(fake_cloud: FakeCloud) -> None:
    fake_cloud.queue_replies([ToolCall("get_time", id="call_1")])
    fake_cloud.reply = lambda body: f"It is {body['messages'][-1]['content']}."
    assert "".join(run(collect(fake_cloud, toolbox()))) == "It is ten past ten."
    first, second = fake_cloud.requests_for("llm")
    assert {t["function"]["name"] for t in first.json["tools"]} == {"get_time", "set_timer"}
    assert second.messages[: len(QUESTION)] == QUESTION
    call, result = second.messages[len(QUESTION):]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["id"] == "call_1"
    assert call["tool_calls"][0]["function"]["name"] == "get_time"
    assert result == {"role": "tool", "tool_call_id": "call_1", "content": "ten past ten"}


def test_parallel_tool_calls_with_arguments(fake_cloud: FakeCloud) -> None:
    used: list[tuple[str, dict]] = []
    fake_cloud.queue_replies([ToolCall("set_timer", {"seconds": 300, "label": "tea"}),
                              ToolCall("get_time")], "Done.")
    assert run(collect(fake_cloud, toolbox(used))) == ["Done."]
    assert used == [("set_timer", {"seconds": 300, "label": "tea"})]
    results = [m for m in fake_cloud.requests_for("llm")[1].messages if m["role"] == "tool"]
    assert [r["content"] for r in results] == ["timer set for 300 seconds", "ten past ten"]


def test_an_unknown_tool_is_reported_to_the_model(fake_cloud: FakeCloud) -> None:
    fake_cloud.queue_replies([ToolCall("launch_rockets")], "I cannot do that.")
    assert run(collect(fake_cloud, toolbox())) == ["I", " cannot", " do", " that."]
    tool_message = fake_cloud.requests_for("llm")[1].messages[-1]
    assert tool_message["content"].startswith("error: no tool")


def test_the_tool_loop_is_bounded(fake_cloud: FakeCloud) -> None:
    # A model that calls a tool whenever it is offered one must still answer.
    fake_cloud.reply = lambda body: [ToolCall("get_time")] if body.get("tools") else "Fine."
    assert run(collect(fake_cloud, toolbox())) == ["Fine."]
    requests = fake_cloud.requests_for("llm")
    assert len(requests) == MAX_TOOL_ROUNDS + 1
    assert "tools" not in requests[-1].json


def test_tool_calls_without_tools_offered_fail(fake_cloud: FakeCloud) -> None:
    fake_cloud.reply = [ToolCall("get_time")]
    error = failure(fake_cloud)
    assert "not offered" in error.reason and not error.offline


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_mean_offline(fake_cloud: FakeCloud, status: int) -> None:
    fake_cloud.fail("llm", "status", status=status)
    error = failure(fake_cloud)
    assert error.offline and error.stage == "llm" and not error.partial
    assert str(status) in error.reason


def test_rate_limit_carries_retry_after(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "rate_limit", retry_after=7)
    error = failure(fake_cloud)
    assert (error.retry_after, error.offline) == (7.0, False)
    assert "429" in error.reason


def test_a_refused_key_takes_the_whole_cloud_out(fake_cloud: FakeCloud) -> None:
    # Every stage shares the key: offline (all breakers), with the cause to show.
    fake_cloud.fail("llm", "status", status=401)
    error = failure(fake_cloud)
    assert error.offline and error.cause == "key_refused" and "401" in error.reason


def test_refused_connection_is_offline(fake_cloud: FakeCloud) -> None:
    with fake_cloud.offline():
        error = failure(fake_cloud)
    assert error.offline and error.cause == "refused"


def test_a_dropped_connection_before_any_answer_is_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "disconnect")
    assert failure(fake_cloud).offline


def test_no_retries_hidden_in_the_library(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "status", status=503, times=None)
    failure(fake_cloud)
    assert len(fake_cloud.requests_for("llm")) == 1


def test_stall_before_the_first_token_times_out_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "stall_first", seconds=60)
    error = failure(fake_cloud, timeouts=FAST | {"llm_first_token": 0.3})
    assert error.offline and "first token" in error.reason
    assert fake_cloud.requests_for("llm")[0].wait().closed_early


def test_slow_first_token_counts_from_the_request(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(llm_first_token=5)
    error = failure(fake_cloud, timeouts=FAST | {"llm_first_token": 0.3})
    assert error.offline and not error.partial


def test_stall_mid_stream_is_partial_and_not_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.reply = "one two three four five"
    fake_cloud.fail("llm", "stall_mid", after=2, seconds=60)
    received: list[str] = []

    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(timeouts=FAST | {"llm_idle": 0.3}),
                               KEY) as client:
            async for delta in CloudLLM(client).reply(QUESTION, Toolbox()):
                received.append(delta)

    with pytest.raises(LlmCloudError) as caught:
        run(scenario())
    assert received == ["one", " two"]
    assert caught.value.partial and not caught.value.offline
    assert "stalled" in caught.value.reason
    assert fake_cloud.requests_for("llm")[0].wait().closed_early


def test_reset_mid_stream_after_text_is_partial(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "reset_mid", after=2)
    error = failure(fake_cloud)
    assert error.partial and not error.offline and "mid-stream" in error.reason


def test_reset_before_any_text_is_not_partial(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "reset_mid", after=0)
    error = failure(fake_cloud)
    assert not error.partial and "mid-stream" in error.reason


def test_a_truncated_stream_is_an_error(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "truncate", after=2)
    error = failure(fake_cloud)
    assert error.partial and "ended before" in error.reason


@pytest.mark.parametrize("kind", ["malformed_sse", "malformed_json"])
def test_malformed_events_are_errors(fake_cloud: FakeCloud, kind: str) -> None:
    fake_cloud.fail("llm", kind, after=1)
    error = failure(fake_cloud)
    assert "malformed" in error.reason and error.partial and not error.offline


def test_cancelling_the_consumer_closes_the_stream(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(llm_tokens_per_second=5)
    fake_cloud.reply = "word " * 100

    async def scenario() -> list[str]:
        received: list[str] = []
        first = asyncio.Event()

        async def consume(llm: CloudLLM) -> None:
            async for delta in llm.reply(QUESTION, Toolbox()):
                received.append(delta)
                first.set()

        async with CloudClient(fake_cloud.settings(timeouts=FAST), KEY) as client:
            task = asyncio.create_task(consume(CloudLLM(client)))
            await asyncio.wait_for(first.wait(), 10)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
            record = await asyncio.wait_for(
                asyncio.to_thread(fake_cloud.requests_for("llm")[0].wait, 5), 10)
            assert record.closed_early
        return received

    assert 1 <= len(run(scenario())) < 100


def test_cancelling_while_waiting_for_the_first_token_closes_the_request(
        fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "stall_first", seconds=60)

    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(timeouts=FAST | {"llm_first_token": 30}),
                               KEY) as client:
            task = asyncio.create_task(collect_with(client))
            await asyncio.to_thread(fake_cloud.wait_for_request, "llm")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
            record = await asyncio.to_thread(fake_cloud.requests_for("llm")[0].wait, 5)
            assert record.closed_early

    async def collect_with(client: CloudClient) -> list[str]:
        return [d async for d in CloudLLM(client).reply(QUESTION, Toolbox())]

    run(scenario())


def test_stopping_early_with_aclosing_closes_the_stream(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(llm_tokens_per_second=5)
    fake_cloud.reply = "word " * 100

    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(timeouts=FAST), KEY) as client:
            async with contextlib.aclosing(CloudLLM(client).reply(QUESTION, Toolbox())) as it:
                async for _ in it:
                    break
            record = await asyncio.to_thread(fake_cloud.requests_for("llm")[0].wait, 5)
            assert record.closed_early

    run(scenario())


def test_requests_reuse_one_connection(fake_cloud: FakeCloud) -> None:
    async def scenario() -> None:
        async with CloudClient(fake_cloud.settings(timeouts=FAST), KEY) as client:
            llm = CloudLLM(client)
            for _ in range(3):
                assert [d async for d in llm.reply(QUESTION, Toolbox())]

    run(scenario())
    assert len({r.client_port for r in fake_cloud.requests_for("llm")}) == 1


def test_a_captive_portal_page_means_offline(fake_cloud: FakeCloud) -> None:
    fake_cloud.fail("llm", "captive_portal")
    error = failure(fake_cloud)
    assert error.offline and "web page" in error.reason


def test_tools_are_optional(fake_cloud: FakeCloud) -> None:
    async def scenario() -> str:
        async with CloudClient(fake_cloud.settings(), KEY) as client:
            return "".join([d async for d in CloudLLM(client).reply(QUESTION)])

    assert run(scenario()) == fake_cloud.reply


def test_the_first_delta_arrives_while_the_model_still_writes(fake_cloud: FakeCloud) -> None:
    fake_cloud.latency = Latency(llm_tokens_per_second=20)
    fake_cloud.reply = "word " * 60  # three seconds of writing

    async def scenario() -> bool:
        async with (CloudClient(fake_cloud.settings(timeouts=FAST), KEY) as client,
                    contextlib.aclosing(CloudLLM(client).reply(QUESTION)) as deltas):
            async for _ in deltas:
                return not fake_cloud.requests_for("llm")[0].done.is_set()
        return False

    assert run(scenario())


def test_a_gap_shorter_than_llm_idle_is_tolerated(fake_cloud: FakeCloud) -> None:
    fake_cloud.reply = "one two three four"
    fake_cloud.fail("llm", "stall_mid", after=2, seconds=0.3)
    assert "".join(run(collect(fake_cloud, timeouts=FAST | {"llm_idle": 3.0}))) == (
        fake_cloud.reply)


def test_unnumbered_whole_tool_calls_from_other_servers(fake_cloud: FakeCloud) -> None:
    used: list[tuple[str, dict]] = []
    fake_cloud.tool_call_index = False
    fake_cloud.queue_replies([ToolCall("set_timer", {"seconds": 60}), ToolCall("get_time")],
                             "Both done.")
    assert "".join(run(collect(fake_cloud, toolbox(used)))) == "Both done."
    assert used == [("set_timer", {"seconds": 60, "label": ""})]
    messages = fake_cloud.requests_for("llm")[1].messages
    ids = [c["id"] for c in messages[len(QUESTION)]["tool_calls"]]
    assert len(set(ids)) == 2 and all(ids)
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == ids


def test_a_reply_cut_at_max_tokens_ends_normally(fake_cloud: FakeCloud) -> None:
    fake_cloud.reply = "one two three four five six"
    assert run(collect(fake_cloud, max_tokens=3)) == ["one", " two", " three"]


# --- streams no fake-cloud fault sends: in memory, byte for byte ------------------------

def event(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


HELLO = event('{"choices": [{"index": 0, "delta": {"content": "Hello"}}]}')
STOP = event('{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}')
DONE = event("[DONE]")


def answered(body: bytes) -> list[str] | LlmCloudError:
    """CloudLLM's deltas (or its error) for a 200 event stream of ``body``."""
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async def scenario() -> list[str] | LlmCloudError:
        settings = CloudSettings(timeouts=CloudTimeouts(**FAST))
        async with CloudClient(settings, KEY, transport=httpx2.MockTransport(answer)) as client:
            try:
                return [d async for d in CloudLLM(client).reply(QUESTION)]
            except LlmCloudError as exc:
                return exc

    return run(scenario())


def test_chunks_without_choices_are_skipped() -> None:
    body = (event('{"usage": {"total_tokens": 3}}') + event('{"choices": []}') + HELLO
            + event('{"choices": [{"delta": {"content": null}}]}') + STOP + DONE)
    assert answered(body) == ["Hello"]


def test_a_body_that_ends_without_done_after_finishing_is_whole() -> None:
    assert answered(HELLO + STOP) == ["Hello"]


def test_events_after_done_are_ignored() -> None:
    assert answered(HELLO + STOP + DONE + HELLO) == ["Hello"]


@pytest.mark.parametrize("payload", [
    "[1, 2]",                                                  # JSON, not an object
    '{"choices": "none"}',                                     # choices not a list
    '{"choices": [7]}',                                        # a choice not an object
    '{"choices": [{"delta": "Hello"}]}',                       # a delta not an object
    '{"choices": [{"delta": {"content": 5}}]}',                # content not text
    '{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": '
    '{"name": "get_time", "arguments": {"a": 1}}}]}}]}',       # arguments not a string
    '{"choices": [{"delta": {"tool_calls": ["get_time"]}}]}',  # a call not an object
    '{"choices": [{"delta": {"content": "Hel',                 # cut JSON
    "[" * 100_000,                                             # nesting past recursion
])
def test_malformed_chunks_are_typed_errors(payload: str) -> None:
    error = answered(HELLO + event(payload) + STOP + DONE)
    assert isinstance(error, LlmCloudError)
    assert "malformed" in error.reason and error.partial and not error.offline


def test_a_line_that_never_ends_is_cut_at_the_event_bound() -> None:
    error = answered(HELLO + b"data: " + b"x" * (sse.MAX_EVENT_BYTES + 1))
    assert isinstance(error, LlmCloudError)
    assert "malformed" in error.reason and f"{sse.MAX_EVENT_BYTES} bytes" in error.reason
    assert error.partial


def test_an_error_the_service_reports_mid_stream() -> None:
    error = answered(HELLO + event('{"error": {"message": "The server is overloaded."}}'))
    assert isinstance(error, LlmCloudError)
    assert "overloaded" in error.reason and error.partial and not error.offline
