"""Cloud chat model: streamed /chat/completions with the device's tools.

Deltas are yielded as they arrive so the chunker can hand the first sentence
to TTS while the model is still writing. Tool calls are run here, through the
Toolbox, and the conversation continues in a new streamed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from edge_agent.cloud.client import FAILURES, CloudClient, check_intercepted, convert
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
        responded = started = finished = False
        stream = None
        self._client.touch()
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self._client.api.chat.completions.create(
                    model=settings.llm_model,
                    messages=conversation,
                    max_tokens=settings.max_tokens,
                    stream=True,
                    **({"tools": tools.schemas()} if tools is not None else {}),
                )
            responded = True
            check_intercepted(stream.response.headers.get("content-type", ""), LlmCloudError)
            for n in range(MAX_CHUNKS):
                if n % _CHUNKS_PER_YIELD == _CHUNKS_PER_YIELD - 1:
                    # Chunks already buffered are parsed without ever suspending: let
                    # the loop (the wake word, timeouts) run between batches of them.
                    await asyncio.sleep(0)
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(stream, None)
                if chunk is None:
                    break
                if not chunk.choices:  # e.g. a usage-only chunk
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                for call in delta.tool_calls or ():
                    pending = _slot(calls, call.index,
                                    bool(call.id or (call.function and call.function.name)))
                    pending.id = call.id or pending.id or f"call_{len(calls)}"
                    if call.function is not None:
                        pending.name += call.function.name or ""
                        pending.arguments += call.function.arguments or ""
                    _check_call(calls, pending, spoke)
                    started = True
                if choice.finish_reason is not None:
                    finished = True
                if delta.content:
                    started = spoke = True
                    yield delta.content
                if started:
                    deadline = loop.time() + timeouts.llm_idle
            else:
                raise LlmCloudError(f"the reply went on past {MAX_CHUNKS} chunks",
                                    partial=spoke)
            if not finished:
                raise LlmCloudError("the stream ended before the reply was complete",
                                    partial=spoke)
        except TimeoutError as exc:
            if started:
                raise LlmCloudError(f"stalled: no token for {timeouts.llm_idle:g} s",
                                    partial=spoke) from exc
            raise LlmCloudError(f"no first token within {timeouts.llm_first_token:g} s",
                                offline=True) from exc
        except FAILURES as exc:
            raise convert(exc, LlmCloudError, midstream=responded, partial=spoke) from exc
        finally:
            if stream is not None:
                await stream.close()
                if not finished:
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
