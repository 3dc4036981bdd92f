"""Cloud chat model: streamed /chat/completions with the device's tools.

Deltas are yielded as they arrive so the chunker can hand the first sentence
to TTS while the model is still writing. Tool calls are run here, through the
Toolbox, and the conversation continues in a new streamed request. The stream
is server-sent events (``sse``) of ``chat.completion.chunk`` JSON, then
``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2

from edge_agent.cloud import sse
from edge_agent.cloud.client import FAILURES, CloudClient, convert
from edge_agent.errors import LlmCloudError
from edge_agent.intents.tools import Toolbox

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3
"""Requests that may end in tool calls; the next one is sent without tools, so a
model that keeps calling tools still has to answer."""
MAX_CHUNKS = 20_000
"""Streamed chunks (about one token each) per request, above the largest ``max_tokens``
the config allows. A server that streams on past this is broken: its reply is cut off there, so an
endless stream of empty deltas cannot hold a turn forever."""
_CHUNKS_PER_YIELD = 16
MAX_TOOL_CALLS = 16
"""Tool calls in one reply; more is a broken stream, not a plan."""
MAX_ARGUMENT_CHARS = 16_000
"""Characters of one tool call's arguments (the device's tools take a few words)."""


_DONE = "[DONE]"
"""The data of the event that ends an OpenAI stream."""


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class CloudLLM:
    """Streams a reply; raises LlmCloudError (``partial`` once text was yielded)."""

    name = "cloud"

    def __init__(self, client: CloudClient) -> None:
        self._client = client

    async def reply(
        self, messages: list[dict[str, Any]], tools: Toolbox | None = None,
    ) -> AsyncIterator[str]:
        """Text deltas of the answer. Cancelling the consumer closes the HTTP stream;
        a consumer that stops early should wrap this in ``contextlib.aclosing``."""
        self._client.require_key(LlmCloudError)
        conversation = list(messages)
        tools = tools if tools is not None else Toolbox()
        spoke = False
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            offer_tools = len(tools) > 0 and round_ < MAX_TOOL_ROUNDS
            calls: dict[int, _PendingCall] = {}
            # aclosing: when our consumer stops early, the HTTP stream closes now, not at GC.
            async with contextlib.aclosing(
                self._stream(conversation, tools if offer_tools else None, calls, spoke)
            ) as texts:
                async for text in texts:
                    spoke = True
                    yield text
            if not calls:
                return
            if not offer_tools:
                raise LlmCloudError("the model called tools it was not offered", partial=spoke)
            await self._run_tools(conversation, calls, tools)

    async def _stream(
        self,
        conversation: list[dict[str, Any]],
        tools: Toolbox | None,
        calls: dict[int, _PendingCall],
        spoke: bool,
    ) -> AsyncIterator[str]:
        """One streamed request: yields text, fills ``calls`` with any tool calls."""
        settings = self._client.settings
        timeouts = settings.timeouts
        loop = asyncio.get_running_loop()
        # The first token must come within llm_first_token of the request, connection
        # setup included; after that, no gap between chunks may exceed llm_idle. The
        # consumer's own time between chunks (waiting on TTS) is not counted.
        deadline = loop.time() + timeouts.llm_first_token
        responded = started = finished = complete = False
        body: dict[str, Any] = {"model": settings.llm_model, "messages": conversation,
                                "max_tokens": settings.max_tokens, "stream": True}
        if tools is not None:
            body["tools"] = tools.schemas()
        try:
            async with contextlib.AsyncExitStack() as stack:
                request = self._client.request("POST", "/chat/completions", json=body)
                async with asyncio.timeout_at(deadline):
                    response = await stack.enter_async_context(
                        self._client.send(request, LlmCloudError))
                responded = True
                chunks = response.aiter_bytes()
                stack.push_async_callback(chunks.aclose)
                events = sse.events(chunks)
                stack.push_async_callback(events.aclose)
                for n in range(MAX_CHUNKS):
                    if n % _CHUNKS_PER_YIELD == _CHUNKS_PER_YIELD - 1:
                        # Events already buffered are parsed without ever suspending:
                        # let the loop (the wake word, timeouts) run between batches.
                        await asyncio.sleep(0)
                    async with asyncio.timeout_at(deadline):
                        data = await anext(events, None)
                    if data is None:
                        complete = True
                        break
                    if data == _DONE:
                        break
                    choice = _choice(data, spoke)
                    if choice is None:  # e.g. a usage-only chunk
                        continue
                    delta = choice.get("delta") or {}
                    for call in delta.get("tool_calls") or ():
                        _add_call(calls, call, spoke)
                        started = True
                    if choice.get("finish_reason") is not None:
                        finished = True
                    content = delta.get("content")
                    if content:
                        if not isinstance(content, str):
                            raise TypeError("delta content is not text")
                        started = spoke = True
                        yield content
                    if started:
                        deadline = loop.time() + timeouts.llm_idle
                else:
                    raise LlmCloudError(f"the reply went on past {MAX_CHUNKS} chunks",
                                        partial=spoke)
                if not finished:
                    raise LlmCloudError("the stream ended before the reply was complete",
                                        partial=spoke)
                complete = complete or await _ends(events, deadline)
        except TimeoutError as exc:
            if started:
                raise LlmCloudError(f"stalled: no token for {timeouts.llm_idle:g} s",
                                    partial=spoke) from exc
            raise LlmCloudError(f"no first token within {timeouts.llm_first_token:g} s",
                                offline=True) from exc
        except FAILURES as exc:
            raise convert(exc, LlmCloudError, midstream=responded, partial=spoke) from exc
        finally:
            if not complete:
                self._client.touch(reusable=False)

    async def _run_tools(
        self, conversation: list[dict[str, Any]], calls: dict[int, _PendingCall], tools: Toolbox,
    ) -> None:
        ordered = [calls[i] for i in sorted(calls)]
        conversation.append({
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                           for c in ordered],
        })
        for call in ordered:
            result = await tools.call(call.name, call.arguments or "{}")
            log.info("tool %s -> %s", call.name, result[:80])
            conversation.append({"role": "tool", "tool_call_id": call.id, "content": result})


async def _ends(events: AsyncIterator[str], deadline: float) -> bool:
    """After [DONE]: whether the body ends there too, so its connection can serve the
    next request. The reply is whole either way: a server that goes on costs only
    the connection."""
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(events, None) is None
    except (TimeoutError, httpx2.HTTPError, sse.SSEError):
        return False


def _choice(data: str, spoke: bool) -> dict[str, Any] | None:
    """The first choice of one streamed chunk (None when it has none). A chunk that
    is not the JSON the API promises raises ValueError or TypeError (malformed); an
    error the server reports mid-stream raises LlmCloudError with its message."""
    chunk = json.loads(data)
    if not isinstance(chunk, dict):
        raise TypeError("a chunk that is not a JSON object")
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise LlmCloudError(f"the service reported an error mid-stream: {str(message)[:120]}",
                            partial=spoke)
    choices = chunk.get("choices")
    if not choices:
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise TypeError("choices that are not a list of objects")
    return choices[0]


def _add_call(calls: dict[int, _PendingCall], call: dict[str, Any], spoke: bool) -> None:
    """Add one tool-call delta to the call it continues or starts."""
    function = call.get("function") or {}
    name, arguments = function.get("name") or "", function.get("arguments") or ""
    if not isinstance(name, str) or not isinstance(arguments, str):
        raise TypeError("a tool call whose name or arguments are not text")
    pending = _slot(calls, call.get("index"), bool(call.get("id") or name))
    pending.id = call.get("id") or pending.id or f"call_{len(calls)}"
    pending.name += name
    pending.arguments += arguments
    _check_call(calls, pending, spoke)


def _check_call(calls: dict[int, _PendingCall], call: _PendingCall, spoke: bool) -> None:
    if len(calls) > MAX_TOOL_CALLS:
        raise LlmCloudError(f"more than {MAX_TOOL_CALLS} tool calls in one reply",
                            partial=spoke)
    if len(call.arguments) + len(call.name) > MAX_ARGUMENT_CHARS:
        raise LlmCloudError(f"tool call arguments longer than {MAX_ARGUMENT_CHARS} "
                            "characters", partial=spoke)


def _slot(calls: dict[int, _PendingCall], index: int | None, starts: bool) -> _PendingCall:
    """The call a tool-call delta belongs to. OpenAI numbers them (``index``); some
    compatible servers do not, and a delta naming a function then starts a new call."""
    if index is None:
        index = len(calls) if starts or not calls else max(calls)
    return calls.setdefault(index, _PendingCall())
