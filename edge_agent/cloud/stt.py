"""Cloud speech to text: the utterance as an in-memory WAV to /audio/transcriptions."""

from __future__ import annotations

import asyncio
import io
import logging
import wave

import numpy as np
import openai

from edge_agent.cloud.client import FAILURES, CloudClient, check_intercepted, convert
from edge_agent.errors import SttCloudError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


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
        settings = self._client.settings
        data = wav_bytes(audio)
        self._client.touch()
        try:
            async with asyncio.timeout(settings.timeouts.stt):
                raw = await self._client.api.audio.transcriptions.with_raw_response.create(
                    model=settings.stt_model,
                    file=("utterance.wav", data, "audio/wav"),
                    language=settings.language or openai.omit,
                    response_format="json",
                )
            check_intercepted(raw.headers.get("content-type", ""), SttCloudError)
            text = raw.parse().text
            if not isinstance(text, str):
                raise TypeError("no text in the transcript")
        except TimeoutError as exc:
            raise SttCloudError(f"no transcript within {settings.timeouts.stt:g} s",
                                offline=True) from exc
        except FAILURES as exc:
            raise convert(exc, SttCloudError) from exc
        log.debug("transcribed %.2f s of audio: %d chars", len(audio) / SAMPLE_RATE, len(text))
        return text.strip()
