"""Device tools and local intents: what the speaker can do by itself. The same
tool definitions serve LLM tool calls online and local intents offline."""

from edge_agent.intents.tools import Tool, Toolbox

__all__ = ["Tool", "Toolbox"]
