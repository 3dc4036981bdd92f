"""Voice activity (webrtcvad) and end-of-turn detection."""

from edge_agent.vad._turn import TAIL_SECONDS, EndOfTurnDetector, Outcome, Pause, TurnBounds
from edge_agent.vad._webrtc import VoiceActivity

__all__ = ["TAIL_SECONDS", "EndOfTurnDetector", "Outcome", "Pause", "TurnBounds", "VoiceActivity"]
