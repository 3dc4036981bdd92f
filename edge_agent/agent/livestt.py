"""Cloud recognition while the user speaks (cloud.stt_streaming).

From the moment a turn starts listening, the ring buffer streams to a Realtime
transcription session (edge_agent.cloud.realtime), as ``_transcribe_live``
feeds Vosk. Asking for the transcript up to a sample index commits the audio
up to there; the answer is every segment committed so far, joined. If the
user goes on after a commit, the end of the turn commits only the rest: the
words before the pause are not sent twice.
Pieces of each segment's transcript come out as ``transcript_partial`` events.

Any failure makes every transcript asked for fail with SttCloudError (the turn
then uploads the utterance); the socket is closed on every path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from edge_agent.errors import SttCloudError
from edge_agent.events import EventBus

from .supervisor import cancel_within

if TYPE_CHECKING:
    from edge_agent.audio import RingBuffer, RingReader
    from edge_agent.cloud.realtime import RealtimeSession, RealtimeSTT
    from edge_agent.vad import Pause

log = logging.getLogger(__name__)

CHUNK_SECONDS = 0.1
"""Audio per message: 10 small messages a second; a commit never waits for a chunk."""
MIN_SEGMENT_SECONDS = 0.1
"""OpenAI refuses to commit less audio than this; less new audio adds no segment."""
CLOSE_DEADLINE = 1.0
"""A closed stream unwinds (its socket closed) within this."""
COMMIT_PAUSE = 0.15
"""Silence after speech (as the end-of-turn detector counts it) at which the audio
so far is committed. Committing costs nothing the stream has not already sent,
but the segment ends there: with webrtcvad's hangover (its last voiced frame ends
about 0.1 s after the audible end) 0.15 s keeps at least 0.2 s after the last
sound, for soft endings ("-s", "-t") a recognizer clips when cut (the upload
keeps TAIL_SECONDS, 0.25 s, after the last voiced frame)."""

Request = tuple[int | None, int | None, "asyncio.Future[list[asyncio.Future[str]]]"]
"""(index to commit up to, or None: no more audio; index of the last speech the
transcript must hold, if known; who waits for the segments)."""


class LiveCloudSTT:
    """One turn's stream, from ring index ``start``. Call ``aclose`` on every path."""

    def __init__(self, client: RealtimeSTT, ring: RingBuffer, start: int, bus: EventBus,
                 *, turn_id: int) -> None:
        self._client = client
        self._ring = ring
        self._bus = bus
        self._turn_id = turn_id
        self._requests: deque[Request] = deque()
        self._early_for: int | None = None
        """The speech end (voiced_end_index) the last early commit was made for."""
        self._segments: list[asyncio.Future[str]] = []
        self._committed = start
        self._error: SttCloudError | None = None
        self._reading: asyncio.Future | None = None
        self._task = asyncio.create_task(self._run(start), name="cloud-stt-live")

    def observe(self, pause: Pause | None) -> None:
        """Called after every judged frame with the detector's current pause:
        commits once per pause, when it reaches ``COMMIT_PAUSE``."""
        if (pause is not None and pause.seconds >= COMMIT_PAUSE
                and pause.voiced_end_index != self._early_for):
            self._early_for = pause.voiced_end_index
            self._request(pause.end_index, None)

    def transcript(self, end: int, speech_end: int | None = None) -> asyncio.Task[str]:
        """The transcript of the utterance up to ring index ``end``, committing the
        audio not committed yet, unless what is committed already reaches
        ``speech_end`` (the last voiced frame: the rest is silence). Cancelling it
        leaves the stream alone."""
        return asyncio.create_task(self._joined(self._request(end, speech_end)))

    def end(self, end: int | None, speech_end: int | None = None) -> asyncio.Task[str] | None:
        """No more audio after ``end`` (None: nothing more is needed); the stream
        closes once its transcripts are in. Returns ``transcript(end, speech_end)``."""
        if end is None:
            self._request(None, None)
            return None
        task = self.transcript(end, speech_end)
        self._request(None, None)
        return task

    async def aclose(self) -> None:
        """Stop streaming and close the socket (bounded; cancellation included)."""
        await cancel_within([self._task], CLOSE_DEADLINE)

    # --- internals ---------------------------------------------------------------------

    def _request(self, end: int | None,
                 speech_end: int | None) -> asyncio.Future[list[asyncio.Future[str]]]:
        future: asyncio.Future[list[asyncio.Future[str]]] = (
            asyncio.get_running_loop().create_future())
        if self._error is not None:
            future.set_exception(self._error)
            future.exception()  # retrieved: ``end(None)`` has no one waiting
        else:
            self._requests.append((end, speech_end, future))
            if self._reading is not None:
                self._reading.cancel()  # a read waiting for the next chunk: commit now
        return future

    async def _joined(self, request: asyncio.Future[list[asyncio.Future[str]]]) -> str:
        segments = await asyncio.shield(request)
        if not segments:
            raise SttCloudError("nothing was committed")
        # Shielded: a discarded speculative turn must not cancel what the turn shares.
        texts = [(await asyncio.shield(s)).strip() for s in segments]
        return " ".join(t for t in texts if t)

    async def _run(self, start: int) -> None:
        reader = self._ring.reader("cloud-stt", start=start)
        session: RealtimeSession | None = None
        try:
            session = await self._client.open(self._partial)
            await self._feed(session, reader)
            if self._segments:  # the socket stays only until the transcripts are in
                await asyncio.wait(self._segments)
        except SttCloudError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug here must not cost the turn its upload
            log.exception("streaming recognition failed")
            self._fail(SttCloudError(f"unexpected {type(exc).__name__}: {exc}"))
        finally:
            reader.close()
            if session is not None:
                await session.aclose()
            self._fail(SttCloudError("stream closed"))

    async def _feed(self, session: RealtimeSession, reader: RingReader) -> None:
        chunk = int(CHUNK_SECONDS * self._ring.rate)
        least = int(MIN_SEGMENT_SECONDS * self._ring.rate)
        while True:
            if self._requests and self._segments and self._requests[0][1] is not None and (
                    self._requests[0][1] <= self._committed):
                _, _, waiter = self._requests.popleft()  # its words are all committed
                if not waiter.done():
                    waiter.set_result(list(self._segments))
                continue
            if self._requests and (
                    self._requests[0][0] is None or reader.position >= self._requests[0][0]):
                end, _, waiter = self._requests.popleft()
                if end is None:
                    return
                if reader.position - self._committed >= least or not self._segments:
                    self._segments.append(await session.commit())
                    self._committed = reader.position
                if not waiter.done():
                    waiter.set_result(list(self._segments))
                continue
            target = self._requests[0][0] if self._requests else None
            n = chunk if target is None else min(chunk, target - reader.position)
            read = asyncio.ensure_future(reader.read(n))
            self._reading = read
            try:
                await asyncio.wait({read})
            finally:
                self._reading = None
                read.cancel()
            if not read.cancelled():  # else a commit was asked for meanwhile
                await session.append(read.result())

    def _partial(self, text: str) -> None:
        done = [s.result().strip() for s in self._segments
                if s.done() and not s.cancelled() and s.exception() is None]
        self._bus.emit("transcript_partial", text=" ".join([*done, text.strip()]).strip(),
                       turn_id=self._turn_id)

    def _fail(self, error: SttCloudError) -> None:
        if self._error is None:
            self._error = error
        for _, _, waiter in self._requests:
            if not waiter.done():
                waiter.set_exception(self._error)
                waiter.exception()  # retrieved: ``end(None)`` has no one waiting
        self._requests.clear()
