"""Device tools and local intents: what the speaker can do by itself. The same
tool definitions serve LLM tool calls online and local intents offline."""

from edge_agent.intents.device import Device, device_tools
from edge_agent.intents.local import LocalIntents, vocabulary
from edge_agent.intents.timers import Timer, Timers
from edge_agent.intents.tools import Tool, Toolbox, actions_after

__all__ = ["Device", "LocalIntents", "Timer", "Timers", "Tool", "Toolbox", "actions_after",
           "device_tools", "vocabulary"]
