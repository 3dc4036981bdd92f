"""edge-agent: a smart-speaker daemon for the Raspberry Pi.

Wake word and end of turn on the device, the answer through cloud speech and
language models, and on-device engines when the network is gone.
"""

from edge_agent.errors import (
    AudioDeviceError,
    CloudError,
    ConfigError,
    EdgeAgentError,
    LlmCloudError,
    ModelError,
    SttCloudError,
    TtsCloudError,
)
from edge_agent.state import AgentState

__version__ = "0.1.0"

__all__ = [
    "AgentState",
    "AudioDeviceError",
    "CloudError",
    "ConfigError",
    "EdgeAgentError",
    "LlmCloudError",
    "ModelError",
    "SttCloudError",
    "TtsCloudError",
    "__version__",
]
