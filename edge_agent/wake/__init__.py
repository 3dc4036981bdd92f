"""Wake-word detection with openWakeWord's models (tflite) on 80 ms frames."""

from edge_agent.config import wake_model_name as model_name
from edge_agent.wake._detector import WakeDetection, WakeDetector
from edge_agent.wake._models import bundled_models_dir
from edge_agent.wake._phrase import strip_wake_phrase
from edge_agent.wake._scoring import DEFAULT_LAG, DETECTION_LAG

__all__ = [
    "DEFAULT_LAG",
    "DETECTION_LAG",
    "WakeDetection",
    "WakeDetector",
    "bundled_models_dir",
    "model_name",
    "strip_wake_phrase",
]
