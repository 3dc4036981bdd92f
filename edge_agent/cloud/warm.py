"""A rehearsal of one cloud turn at start, so the first real turn is as fast as
the tenth.

The first use of each step pays one-off costs: httpx2's first request and
response, the multipart encoder and the upload's worker thread, the SSE and
JSON parsing, the sentence chunker. So each engine makes one request
here against canned answers in memory (no network, no tokens billed), through
the very code a turn runs. The connection itself is opened by
``CloudClient.prewarm``.
"""

from __future__ import annotations

import json
import logging

import httpx2
import numpy as np

from edge_agent.cloud.client import CloudClient
from edge_agent.cloud.llm import CloudLLM
from edge_agent.cloud.stt import CloudSTT
from edge_agent.cloud.tts import CloudTTS
from edge_agent.config import CloudSettings, Secret
from edge_agent.intents.tools import Toolbox
from edge_agent.text import SentenceChunker, clean_for_speech

log = logging.getLogger(__name__)

_REPLY = ("Rehearsal", " done.", " Fine")


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {"id": "rehearsal", "object": "chat.completion.chunk", "created": 0,
            "model": "rehearsal",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _answer(request: httpx2.Request) -> httpx2.Response:
    """Canned answers in the shapes an OpenAI-compatible service sends."""
    path = request.url.path
    if path.endswith("/audio/transcriptions"):
        return httpx2.Response(200, json={"text": "rehearsal"})
    if path.endswith("/chat/completions"):
        events = [_chunk({"role": "assistant", "content": ""}),
                  *(_chunk({"content": text}) for text in _REPLY),
                  _chunk({}, "stop"), b"data: [DONE]\n\n"]
        return httpx2.Response(200, content=b"".join(events),
                               headers={"content-type": "text/event-stream"})
    if path.endswith("/audio/speech"):
        return httpx2.Response(200, content=bytes(960),
                               headers={"content-type": "application/octet-stream"})
    return httpx2.Response(404, json={"error": {"message": "not rehearsed"}})


async def rehearse(settings: CloudSettings, tools: Toolbox) -> None:
    """One transcription, one streamed chat answer with ``tools`` offered and one
    speech stream, all answered in memory. Never raises (except cancellation):
    a failed rehearsal only means the first turn pays the setup."""
    client = CloudClient(settings, Secret("rehearsal"), transport=httpx2.MockTransport(_answer))
    try:
        await CloudSTT(client).transcribe(np.zeros(1600, dtype=np.int16))
        chunker = SentenceChunker()
        sentences = []
        async for delta in CloudLLM(client).reply([{"role": "user", "content": "hi"}], tools):
            sentences += [clean_for_speech(s) for s in chunker.feed(delta)]
        sentences += chunker.flush()
        async for _ in CloudTTS(client).synthesize(sentences[0] if sentences else "Hi."):
            pass
    except Exception as exc:
        log.warning("cloud rehearsal failed (the first turn will be slower): %s", exc)
    finally:
        await client.aclose()
