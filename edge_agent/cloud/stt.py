"""Cloud speech to text: the utterance as an in-memory WAV to /audio/transcriptions."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import wave
from concurrent.futures import ThreadPoolExecutor

import httpx2
import numpy as np

from edge_agent.cloud.client import FAILURES, MAX_BODY_BYTES, CloudClient, convert, read_body
from edge_agent.errors import SttCloudError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

_encoder: ThreadPoolExecutor | None = None
"""Builds the upload (WAV and multipart body) off the event loop: copying a long
utterance stalled the loop (the wake word, timeouts) by up to 130 ms on a loaded
machine. A worker of its own, so a busy default pool never delays a turn; shared
by every CloudSTT, so the start-up rehearsal (edge_agent.cloud.warm) starts the
thread the first turn uses."""


def _encoder_pool() -> ThreadPoolExecutor:
    global _encoder
    if _encoder is None:
        _encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-upload")
    return _encoder


def close_encoder() -> None:
    """Let the encoder's thread end once idle (call at stop): an executor's thread
    outlives the event loop, so the exit would wait for it or call it stuck. An
    upload after this starts a new one."""
    global _encoder
    pool, _encoder = _encoder, None
    if pool is not None:
        pool.shutdown(wait=False)


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono WAV in memory: the utterance never touches the disk (privacy)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(audio, dtype="<i2").tobytes())
    return buffer.getvalue()


class CloudSTT:
    """Whole-utterance transcription; raises SttCloudError."""

    name = "cloud"

    def __init__(self, client: CloudClient) -> None:
        self._client = client

    async def transcribe(self, audio: np.ndarray) -> str:
        """Text of a 16 kHz mono int16 utterance ("" for no audio or no words)."""
        if len(audio) == 0:
            return ""
        self._client.require_key(SttCloudError)
        timeout = self._client.settings.timeouts.stt
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                request = await loop.run_in_executor(_encoder_pool(), self._upload, audio)
                async with self._client.send(request, SttCloudError) as response:
                    body = await read_body(response, MAX_BODY_BYTES)
            text = json.loads(body)["text"]
            if not isinstance(text, str):
                raise TypeError("no text in the transcript")
        except TimeoutError as exc:
            raise SttCloudError(f"no transcript within {timeout:g} s", offline=True) from exc
        except FAILURES as exc:
            raise convert(exc, SttCloudError) from exc
        log.debug("transcribed %.2f s of audio: %d chars", len(audio) / SAMPLE_RATE, len(text))
        return text.strip()

    def _upload(self, audio: np.ndarray) -> httpx2.Request:
        """The multipart request (runs in the encoder thread)."""
        settings = self._client.settings
        fields = {"model": settings.stt_model, "response_format": "json"}
        if settings.language:
            fields["language"] = settings.language
        return self._client.request(
            "POST", "/audio/transcriptions", data=fields,
            files={"file": ("utterance.wav", wav_bytes(audio), "audio/wav")})
