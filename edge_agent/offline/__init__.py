"""On-device engines for when the cloud is out of reach: Vosk speech
recognition and Piper speech synthesis, with the same shapes as the cloud ones."""

from edge_agent.offline.models import find_vosk_model
from edge_agent.offline.piper_tts import PiperTTS, default_piper_voice
from edge_agent.offline.vosk_stt import VoskStream, VoskSTT

__all__ = ["PiperTTS", "VoskSTT", "VoskStream", "default_piper_voice", "find_vosk_model"]
