"""Text on its way from the language model to the voice: sentence chunking and
cleanup of what a voice cannot say."""

from edge_agent.text.chunker import SentenceChunker
from edge_agent.text.speech import clean_for_speech, speakable

__all__ = ["SentenceChunker", "clean_for_speech", "speakable"]
