"""Cloud text to speech: /audio/speech as raw PCM, streamed chunk by chunk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from edge_agent.cloud.client import FAILURES, CloudClient, convert
from edge_agent.errors import TtsCloudError

log = logging.getLogger(__name__)

_NOT_PCM = {b"RIFF": "WAV", b"ID3": "MP3", b"OggS": "Ogg", b"fLaC": "FLAC"}
"""Leading bytes of containers a misconfigured server sends instead of raw PCM (played
as PCM they would be loud noise). Only long magics: real PCM may start with any 2 bytes."""
_NOT_PCM_TYPES = ("audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave",
                  "audio/ogg", "audio/opus", "audio/flac", "audio/aac", "text/",
                  "application/json")


MAX_SPEECH_SECONDS = 120
"""Audio for one sentence (sentences are at most a few hundred characters, well under
a minute spoken). A server streaming on past this is broken: it fails like one."""
MAX_SPEECH_BYTES = MAX_SPEECH_SECONDS * 24000 * 2
"""The same bound in bytes of 24 kHz s16le PCM, counted as received."""


class CloudTTS:
    """Streams s16le mono PCM at ``sample_rate``; raises TtsCloudError."""

    name = "cloud"
    sample_rate = 24000  # what OpenAI's response_format="pcm" is defined as

    def __init__(self, client: CloudClient) -> None:
        self._client = client

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM chunks of whole samples. Cancelling the consumer closes the stream."""
        if not text.strip():
            return
        self._client.require_key(TtsCloudError)
        settings = self._client.settings
        loop = asyncio.get_running_loop()
        # tts_first_byte bounds the wait for the first audio and, as no separate
        # setting exists, every later gap: a stalled stream must end somehow.
        budget = settings.timeouts.tts_first_byte
        deadline = loop.time() + budget
        responded = started = complete = False
        carry = b""
        received = 0
        try:
            async with contextlib.AsyncExitStack() as stack:
                request = self._client.request("POST", "/audio/speech", json={
                    "model": settings.tts_model, "voice": settings.tts_voice, "input": text,
                    "response_format": "pcm"})
                async with asyncio.timeout_at(deadline):
                    response = await stack.enter_async_context(
                        self._client.send(request, TtsCloudError))
                responded = True
                _check_content_type(response.headers.get("content-type", ""))
                chunks = response.aiter_bytes()
                stack.push_async_callback(chunks.aclose)
                while True:
                    # Once audio flows, only the wait on the server counts: the consumer
                    # may hold the stream back (playback paces it) for as long as it likes.
                    async with asyncio.timeout_at(
                            deadline if not started else loop.time() + budget):
                        chunk = await anext(chunks, None)
                    if chunk is None:
                        complete = True
                        break
                    if not started:
                        _check_magic(chunk)
                        started = True
                    received += len(chunk)
                    if received > MAX_SPEECH_BYTES:
                        raise TtsCloudError(
                            f"more than {MAX_SPEECH_SECONDS} s of audio for one sentence")
                    chunk, carry = _align(carry + chunk)
                    if chunk:
                        yield chunk
        except TimeoutError as exc:
            if started:
                raise TtsCloudError(f"stalled: no audio for {budget:g} s") from exc
            raise TtsCloudError(f"no audio within {budget:g} s", offline=True) from exc
        except FAILURES as exc:
            raise convert(exc, TtsCloudError, midstream=responded) from exc
        finally:
            if not complete:
                self._client.touch(reusable=False)
        if carry:
            log.debug("dropped a trailing half sample")


def _align(data: bytes) -> tuple[bytes, bytes]:
    """Whole int16 samples, and the odd byte left for the next chunk."""
    cut = len(data) & ~1
    return data[:cut], data[cut:]


def _check_content_type(ctype: str) -> None:
    if ctype.lower().startswith(_NOT_PCM_TYPES):
        raise TtsCloudError(f"wrong audio format: expected raw PCM, got {ctype}")


def _check_magic(first: bytes) -> None:
    for magic, kind in _NOT_PCM.items():
        if first.startswith(magic):
            raise TtsCloudError(f"wrong audio format: expected raw PCM, got {kind} data")
