"""Streaming speech recognition over OpenAI's Realtime transcription WebSocket.

One session per turn: audio goes up while the user speaks, and each ``commit``
(a pause, the end of speech) comes back as one transcript a moment later, with
``...delta`` pieces on the way. Every failure (refused, a handshake 401/404, an
``error`` event, a malformed event, a lost connection) is an SttCloudError:
the turn then uploads the same utterance instead. It speaks the protocol with
``websockets`` directly; no SDK.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from edge_agent.audio.ring import SAMPLE_RATE
from edge_agent.config import CloudSettings, Secret
from edge_agent.errors import SttCloudError

log = logging.getLogger(__name__)

STREAM_RATE = 24000
"""The session's input: PCM16 little-endian mono at 24 kHz (audio/pcm)."""
MAX_EVENT_BYTES = 1 << 20
"""A server event holds text, never audio: a bigger one is refused (bounded buffer)."""
MAX_TRANSCRIPT_CHARS = 4000
"""Longer than any spoken question: a server sending more is cut off here."""
CLOSE_TIMEOUT = 0.3
"""Closing waits this long for the server's close frame, then drops the connection
(one round trip is plenty; a cancelled turn must unwind well within a second)."""

NOT_OFFERED = frozenset({404, 405, 501})
"""Handshake answers meaning the provider has no Realtime endpoint (not a fault)."""
ASK_AGAIN_SECONDS = 600.0
"""After such an answer, turns upload without trying the stream for this long:
otherwise every turn would pay a failed handshake and log a failover."""

Partial = Callable[[str], None]
"""Called with the text of the segment being transcribed so far."""


def realtime_url(settings: CloudSettings) -> str:
    """The WebSocket URL: the setting, else base_url with ws(s) (OpenAI's layout)."""
    if settings.stt_streaming_url:
        return settings.stt_streaming_url
    scheme, _, rest = settings.base_url.partition("://")
    ws = {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme)
    return f"{ws}://{rest.rstrip('/')}/realtime?intent=transcription"


class RealtimeSTT:
    """Opens transcription sessions; raises SttCloudError."""

    name = "cloud"

    def __init__(self, settings: CloudSettings, api_key: Secret | None) -> None:
        self.settings = settings
        self._key = api_key
        self._not_offered_until = 0.0

    @property
    def offered(self) -> bool:
        """False for ASK_AGAIN_SECONDS after the provider said it has no such endpoint."""
        return time.monotonic() >= self._not_offered_until

    async def open(self, on_partial: Partial | None = None) -> RealtimeSession:
        """Connect and configure a session (within ``timeouts.connect``)."""
        if self._key is None:
            raise SttCloudError("no API key", offline=True, cause="no_key")
        s = self.settings
        url = realtime_url(s)
        try:
            ws = await connect(
                url, additional_headers={"Authorization": f"Bearer {self._key}"},
                open_timeout=s.timeouts.connect, close_timeout=CLOSE_TIMEOUT,
                max_size=MAX_EVENT_BYTES, ping_interval=None)
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code in NOT_OFFERED:
                self._not_offered_until = time.monotonic() + ASK_AGAIN_SECONDS
                log.warning("the provider has no Realtime transcription at %s (HTTP %d): "
                            "turns upload each utterance instead and try the stream again "
                            "in %.0f min (cloud.stt_streaming = false stops trying)",
                            url, code, ASK_AGAIN_SECONDS / 60)
            raise SttCloudError(f"{url} refused the stream: HTTP {code}",
                                offline=code >= 500) from exc
        except (OSError, TimeoutError) as exc:
            raise SttCloudError(f"cannot open {url}: {exc}", offline=True) from exc
        except (WebSocketException, ValueError) as exc:  # a bad URL or handshake
            raise SttCloudError(f"cannot open {url}: {exc}") from exc
        session = RealtimeSession(ws, on_partial)
        transcription = {"model": s.stt_streaming_model}
        if s.language:
            transcription["language"] = s.language
        try:
            await session.send({"type": "session.update", "session": {
                "type": "transcription",
                "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": STREAM_RATE},
                    "transcription": transcription,
                    "turn_detection": None,  # we commit: our end-of-turn detector decides
                }}}})
        except BaseException:
            await session.aclose()
            raise
        return session


class RealtimeSession:
    """One open stream. ``append`` audio, ``commit`` a segment (its transcript
    comes in the returned future), ``aclose`` on every path."""

    def __init__(self, ws: ClientConnection, on_partial: Partial | None) -> None:
        self._ws = ws
        self._on_partial = on_partial
        self._resampler = _resampler()
        self._unnamed: deque[asyncio.Future[str]] = deque()
        """Commits the server has not yet named (input_audio_buffer.committed)."""
        self._items: dict[str, asyncio.Future[str]] = {}
        self._partial: dict[str, str] = {}
        self._error: SttCloudError | None = None
        self._receiver = asyncio.create_task(self._receive(), name="realtime-receive")

    async def append(self, samples: np.ndarray) -> None:
        """Send 16 kHz int16 audio (resampled to the session's 24 kHz)."""
        await self._append(self._resampler.resample_chunk(samples))

    async def commit(self) -> asyncio.Future[str]:
        """End the segment sent so far; the future gets its transcript (or the error)."""
        # The resampler's last few ms belong to this segment: flushed, and a fresh
        # one for the next (a commit falls in a pause, so no seam can be heard).
        await self._append(self._resampler.resample_chunk(np.zeros(0, np.int16), last=True))
        self._resampler = _resampler()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._unnamed.append(future)
        await self.send({"type": "input_audio_buffer.commit"})
        return future

    async def _append(self, pcm: np.ndarray) -> None:
        if len(pcm):
            await self.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(pcm.astype("<i2").tobytes()).decode()})

    async def send(self, event: dict[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        try:
            await self._ws.send(json.dumps(event))
        except (ConnectionClosed, OSError) as exc:
            self._fail(SttCloudError(f"stream lost while sending: {exc}", partial=True))
            assert self._error is not None
            raise self._error from exc

    async def aclose(self) -> None:
        """Close the connection (bounded by CLOSE_TIMEOUT); pending transcripts fail.
        The socket is closed when this returns, on every path."""
        self._receiver.cancel()
        try:
            await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT)
        except (TimeoutError, OSError, WebSocketException):
            pass
        finally:
            # A close handshake cut short (timed out, or cancelled: the turn is
            # unwinding) leaves the TCP connection open: drop it (a no-op once closed).
            self._ws.transport.abort()
            self._fail(SttCloudError("stream closed"))
            await asyncio.wait({self._receiver})
            await self._ws.wait_closed()  # the socket itself is closed

    async def _receive(self) -> None:
        try:
            async for message in self._ws:
                self._handle(_parse(message))
            raise SttCloudError("the server ended the stream", partial=True)
        except SttCloudError as exc:
            self._fail(exc)
        except (ConnectionClosed, OSError) as exc:
            self._fail(SttCloudError(f"stream lost: {exc}", partial=True))

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        item = str(event.get("item_id", ""))
        if kind == "input_audio_buffer.committed" and self._unnamed:
            self._items[item] = self._unnamed.popleft()
        elif kind == "conversation.item.input_audio_transcription.delta":
            text = (self._partial.get(item, "") + _text(event, "delta"))[:MAX_TRANSCRIPT_CHARS]
            self._partial[item] = text
            if self._on_partial is not None:
                self._on_partial(text)
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._partial.pop(item, None)
            future = self._items.pop(item, None)
            if future is None and self._unnamed:  # a server that skips "committed"
                future = self._unnamed.popleft()
            if future is not None and not future.done():
                future.set_result(_text(event, "transcript")[:MAX_TRANSCRIPT_CHARS])
        elif kind in ("error", "conversation.item.input_audio_transcription.failed"):
            error = event.get("error")
            error = error if isinstance(error, dict) else {}
            raise SttCloudError(f"{kind}: {error.get('message') or 'no message'}"
                                f" ({error.get('code') or error.get('type') or 'no code'})")

    def _fail(self, error: SttCloudError) -> None:
        """Every pending and later transcript fails with ``error`` (the first one)."""
        if self._error is None:
            self._error = error
            log.info("streaming recognition: %s", error.reason)
        pending = [*self._unnamed, *self._items.values()]
        self._unnamed.clear()
        self._items.clear()
        for future in pending:
            if not future.done():
                future.set_exception(self._error)
                future.exception()  # retrieved: nobody may be waiting for it any more


def _resampler() -> soxr.ResampleStream:
    return soxr.ResampleStream(SAMPLE_RATE, STREAM_RATE, 1, dtype="int16")


def _parse(message: str | bytes) -> dict[str, Any]:
    try:
        event = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SttCloudError(f"malformed event: {exc}") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise SttCloudError(f"malformed event: {str(message)[:80]!r}")
    return event


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise SttCloudError(f"malformed {event['type']}: no text in {key!r}")
    return value
