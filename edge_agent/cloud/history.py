"""Conversation history: what was said, bounded so requests stay small and cheap,
and forgotten after a pause so a new visitor does not inherit the last one's
conversation."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_agent.config import CloudSettings


class Conversation:
    """System prompt + the last exchanges (by turns and characters) + the question."""

    def __init__(
        self, settings: CloudSettings, *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._exchanges: deque[tuple[str, str]] = deque()
        self._last = clock()

    def messages(self, user_text: str) -> list[dict[str, Any]]:
        """The request for ``user_text``: newest exchanges that fit the bounds."""
        self._forget_if_idle()
        budget = self._settings.history_chars
        kept: list[tuple[str, str]] = []
        for user, reply in reversed(self._exchanges):
            if len(kept) >= self._settings.history_turns:
                break
            budget -= len(user) + len(reply)
            if budget < 0:
                break
            kept.append((user, reply))
        messages: list[dict[str, Any]] = []
        if self._settings.system_prompt:
            messages.append({"role": "system", "content": self._settings.system_prompt})
        for user, reply in reversed(kept):
            messages += [{"role": "user", "content": user},
                         {"role": "assistant", "content": reply}]
        messages.append({"role": "user", "content": user_text})
        return messages

    def add_exchange(self, user_text: str, reply_text: str) -> None:
        """Record a finished turn. Pass only what was actually spoken: after a barge-in
        the model must not believe the user heard the rest."""
        self._forget_if_idle()
        self._last = self._clock()
        if not user_text.strip() or not reply_text.strip():
            return
        self._exchanges.append((user_text, reply_text))
        while len(self._exchanges) > self._settings.history_turns:
            self._exchanges.popleft()

    def clear(self) -> None:
        self._exchanges.clear()

    def __len__(self) -> int:
        return len(self._exchanges)

    def _forget_if_idle(self) -> None:
        if self._clock() - self._last > self._settings.history_idle_seconds:
            self._exchanges.clear()
