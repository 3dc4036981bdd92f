"""Tools defined once: a JSON schema for the LLM's tool calls and a handler that
local intents call directly. A tool never raises into the conversation; a
failure becomes a short result the model (or the intent) can speak."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., str | Awaitable[str]]

_confirmation: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "tool_confirmation", default=None)


@contextlib.contextmanager
def actions_after(confirmed: asyncio.Future[None] | None) -> Iterator[None]:
    """Inside, a tool that acts waits for ``confirmed`` before it runs: an answer
    started on a guess (a speculative turn) must not set a timer or change the
    volume until the guess is confirmed. A context variable, so the LLM's tool
    calls and the local intents are held alike without being told."""
    token = _confirmation.set(confirmed)
    try:
        yield
    finally:
        _confirmation.reset(token)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    handler: Handler
    """Called with the arguments as keywords; returns text to speak or give the model."""
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    """JSON schema of the keyword arguments."""
    acts: bool = True
    """It changes something (a timer, the volume); False for tools that only tell."""

    def schema(self) -> dict[str, Any]:
        """The OpenAI chat-completions ``tools`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class Toolbox:
    """The set of tools one conversation may use."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._around: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext
        for tool in tools:
            self.add(tool)

    def around_calls(self, around: Callable[[], AbstractContextManager[object]]) -> Toolbox:
        """The same tools, each call run inside ``around()``: a turn stops the LLM's
        stall clock while a tool runs (its time is no silence of the model's)."""
        box = Toolbox(self._tools.values())
        box._around = around
        return box

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} defined twice")
        self._tools[tool.name] = tool

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    async def call(self, name: str, arguments: str | dict[str, Any] | None = None) -> str:
        """Run a tool by name with JSON (or already parsed) arguments."""
        tool = self._tools.get(name)
        if tool is None:
            return f"error: no tool named {name!r}"
        try:
            kwargs = json.loads(arguments or "{}") if isinstance(arguments, str) else (
                arguments or {})
            if not isinstance(kwargs, dict):
                return "error: arguments must be a JSON object"
            with self._around():
                confirmed = _confirmation.get()
                if tool.acts and confirmed is not None:
                    await asyncio.shield(confirmed)  # shared: our cancellation must not cancel it
                result = tool.handler(**kwargs)
                if inspect.isawaitable(result):
                    result = await result
            return str(result)
        except (json.JSONDecodeError, TypeError) as exc:
            return f"error: bad arguments for {name}: {exc}"
        except Exception as exc:
            log.exception("tool %s failed", name)
            return f"error: {name} failed: {exc}"
