"""Cloud engines on any OpenAI-compatible API: one kept-alive client shared by
speech to text, the chat model and text to speech, plus the bounded history.

Every failure is a CloudError of the stage (SttCloudError, LlmCloudError,
TtsCloudError), decided where the library error enters:

    what happened                                   offline  other
    refused, DNS, TLS, connect timeout              yes
    no byte / first token within the stage timeout  yes
    5xx                                             yes      retry_after if sent
    200 with a web page (captive portal, proxy)     yes
    429                                             no       retry_after
    401/403, other 4xx                              no
    stall or reset after the response began         no       partial (LLM text yielded)
    truncated stream, malformed SSE/JSON            no       partial (LLM text yielded)
    audio that is not raw PCM (WAV, MP3, label)     no

Consumers that stop iterating ``reply()`` or ``synthesize()`` early should wrap
them in ``contextlib.aclosing`` so the HTTP stream closes at once; cancelling
the consuming task closes it too.
"""

from edge_agent.cloud.client import CloudClient
from edge_agent.cloud.history import Conversation
from edge_agent.cloud.llm import CloudLLM
from edge_agent.cloud.stt import CloudSTT
from edge_agent.cloud.tts import CloudTTS

__all__ = ["CloudClient", "CloudLLM", "CloudSTT", "CloudTTS", "Conversation"]
