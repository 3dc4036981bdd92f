"""What the speaker shows Home Assistant, read from the agent's own state as
one snapshot: topic name -> payload. The link publishes what changed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from edge_agent.state import AgentState

if TYPE_CHECKING:
    from edge_agent.agent.agent import Agent
    from edge_agent.intents.timers import Timers

TEXT_LIMIT = 255
"""Home Assistant keeps at most 255 characters of a sensor's state."""
UNKNOWN = "None"
"""What HA's MQTT sensor reads as "unknown"; an empty retained payload would
instead delete the topic's retained message."""


def _short(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        return UNKNOWN
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 1] + "…"


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


def _wall(deadline: float) -> str:
    """A monotonic deadline as an ISO time (HA's timestamp sensor), to the second."""
    at = time.time() + deadline - time.monotonic()
    return datetime.fromtimestamp(round(at), UTC).isoformat()


def shown_state(agent: Agent) -> str:
    """The LED's view: idle while the cloud is unreachable shows as "offline"."""
    state = agent.state
    if state is AgentState.IDLE and not agent.online:
        return "offline"
    return str(state)


def near_miss(agent: Agent) -> dict[str, object]:
    """The wake detector's latest near miss (its score as the state, the rest
    as attributes), and each engine's peak over the last minute."""
    diagnostics = agent.wake.diagnostics
    latest = diagnostics.near_misses[-1].to_dict() if diagnostics.near_misses else {}
    return {"score": latest.get("score"), **latest,
            "count": len(diagnostics.near_misses), "peaks": diagnostics.peaks()}


def snapshot(agent: Agent, timers: Timers | None) -> dict[str, str]:
    last = agent.last_turns[-1] if agent.last_turns else None
    running = timers.remaining() if timers is not None else []
    timer_info = {
        "next": _wall(running[0].deadline) if running else None,
        "timers": [{"label": t.label, "ends": _wall(t.deadline)} for t in running],
    }
    return {
        "state": shown_state(agent),
        "muted": _on_off(agent.muted),
        "volume": str(round(agent.volume * 100)),
        "transcript": _short(last.transcript if last else ""),
        "reply": _short(last.reply if last else ""),
        "near_miss": json.dumps(near_miss(agent)),
        "timers": json.dumps(timer_info),
        "network": _on_off(agent.online),
    }
