"""The one conversation state. LEDs, mute, barge-in and the status socket all
read this value; nothing else keeps its own idea of what the speaker is doing."""

from __future__ import annotations

import enum


class AgentState(enum.StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    ERROR = "error"
