"""Cloud engines on any OpenAI-compatible API: one kept-alive client shared by
speech to text, the chat model and text to speech, plus the bounded history."""

from edge_agent.cloud.client import CloudClient
from edge_agent.cloud.history import Conversation
from edge_agent.cloud.llm import CloudLLM
from edge_agent.cloud.stt import CloudSTT
from edge_agent.cloud.tts import CloudTTS

__all__ = ["CloudClient", "CloudLLM", "CloudSTT", "CloudTTS", "Conversation"]
