"""One answer on its way to the speaker: sentences in, audio out, in order.

Sentence k+1 is synthesized while sentence k plays: a starter task begins the
synthesis of each sentence as soon as it arrives (at most ``LOOKAHEAD`` sentences
in hand at once, so a long answer does not open a dozen TTS requests), each into
its own buffer, and a player task drains the buffers in order into ONE
PlaybackStream. When the cloud voice fails, Piper takes over for the rest of the
answer, starting with the sentence that failed. Before the first audio, a cloud
stage that keeps the speaker silent too long gets a short wait notice, played
ahead of everything queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from edge_agent.agent.failover import TTS_GAP_SECONDS, Failover, timed
from edge_agent.errors import TtsCloudError
from edge_agent.logsetup import log_context
from edge_agent.text import clean_for_speech

if TYPE_CHECKING:
    from edge_agent.audio import PlaybackStream, Player

log = logging.getLogger(__name__)

# One sentence playing and one being synthesized: enough to hide the TTS latency
# of the next sentence behind the playback of this one.
LOOKAHEAD = 2
# A library that swallows CancelledError must not hang barge-in or shutdown.
CANCEL_DEADLINE = 1.0
# The longest one stage (STT, the LLM's first token, the first TTS byte) may keep
# the speaker silent before the answer starts: a stalled engine waits out its
# timeout (seconds by default), so past this a short notice says "still here".
# Healthy stages take well under it.
WAIT_NOTICE_AFTER = 1.2
PLAYBACK_AHEAD_SECONDS = 2.0
"""Audio queued at the player ahead of the device. Writing more waits for room, and
the TTS stream is read no faster than that (back-pressure): a server sending audio
forever fills memory by this much, not by 40 MB/s."""
SENTENCE_BUFFER_CHUNKS = 16
"""Network chunks buffered per sentence before its TTS stream stops being read (a
sentence synthesized ahead waits there for the one playing)."""
MAX_ANSWER_AUDIO_SECONDS = 300.0
"""Audio one answer or announcement may play; past it the answer ends there (what
played stays, the rest is dropped)."""


class TextToSpeech(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[bytes]: ...


class RememberedPhrases:
    """A voice that keeps the audio of a few fixed phrases: the notices spoken when
    something failed. A fallback is when a fast answer matters most and the CPU is
    busiest (Vosk decoding), so those phrases are synthesized once, then replayed."""

    def __init__(self, voice: TextToSpeech, phrases: Iterable[str]) -> None:
        self.voice = voice
        self.name = voice.name
        self.sample_rate = voice.sample_rate
        self.phrases = frozenset(phrases)
        self._pcm: dict[str, bytes] = {}

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        remembered = self._pcm.get(text)
        if remembered is not None:
            yield remembered
            return
        chunks = []
        async for pcm in self.voice.synthesize(text):
            chunks.append(pcm)
            yield pcm
        if text in self.phrases:
            self._pcm[text] = b"".join(chunks)

    async def prewarm(self) -> None:
        """Synthesize every phrase now (at start, off the critical path)."""
        for text in sorted(self.phrases - self._pcm.keys()):
            async for _ in self.synthesize(text):
                pass


@dataclass
class _Sentence:
    text: str
    record: bool
    """Part of the answer (kept in the conversation), not a notice about a fault."""
    engine: TextToSpeech | None = None
    chunks: asyncio.Queue[bytes | Exception | None] = field(default_factory=lambda: _buffer())
    task: asyncio.Task[None] | None = None


def _buffer() -> asyncio.Queue[bytes | Exception | None]:
    """A sentence's audio on its way from TTS to the player: bounded, so the TTS
    stream is read no faster than the sentence is played."""
    return asyncio.Queue(maxsize=SENTENCE_BUFFER_CHUNKS)


class SpokenAnswer:
    """Speaks sentences handed to ``say()`` in order; ``finish()`` waits until the
    last one has played. Cancel with ``cancel()``: every TTS stream closes at once."""

    def __init__(
        self,
        player: Player,
        failover: Failover,
        *,
        cloud_tts: TextToSpeech | None,
        piper: TextToSpeech | None,
        first_byte_timeout: float,
        timings: dict[str, float],
        wait_notice: str | None = None,
        hold: asyncio.Future[None] | None = None,
    ) -> None:
        """``hold``: nothing plays before it is done (a speculative answer is
        synthesized ahead, then played once the end of the turn is confirmed)."""
        self._player = player
        self._hold = hold
        self._failover = failover
        self._cloud = cloud_tts  # None once it failed in this answer
        self._piper = piper
        self._first_byte_timeout = first_byte_timeout
        self.timings = timings
        self._incoming: asyncio.Queue[_Sentence | None] = asyncio.Queue()
        self._ready: asyncio.Queue[_Sentence | None] = asyncio.Queue()
        self._slots = asyncio.Semaphore(LOOKAHEAD)
        self._in_hand: list[_Sentence] = []
        self._stream: PlaybackStream | None = None
        # (sentence, estimated monotonic time its last sample leaves the speaker)
        self._played: list[tuple[_Sentence, float]] = []
        self._clock = 0.0
        self._audio_seconds = 0.0
        self._full = False  # MAX_ANSWER_AUDIO_SECONDS reached: nothing more plays
        self._wait_notice = wait_notice
        self._waiting_since = time.monotonic()
        self._waiting_on_cloud = True
        self._wait_changed = asyncio.Event()
        self._notice: asyncio.Task[None] | None = None
        self._tasks = [asyncio.create_task(self._start_all(), name="tts-starter"),
                       asyncio.create_task(self._play_all(), name="tts-player")]
        self._watcher = asyncio.create_task(self._watch_silence(), name="tts-silence")

    @property
    def engine(self) -> TextToSpeech | None:
        """The voice the next sentence is synthesized with. Asked per sentence: a
        stage failing earlier in the turn may have opened the TTS breaker."""
        if self._cloud is not None and self._failover.allow("tts"):
            return self._cloud
        return self._piper

    def say(self, text: str, *, record: bool = True) -> None:
        """Queue a sentence. ``record=False`` marks a notice (apology, offline help)
        that is spoken but not part of the answer the conversation remembers."""
        text = clean_for_speech(text).strip()
        if not text:
            return
        if "first_sentence" not in self.timings:
            self.timings["first_sentence"] = time.monotonic()
            self.waiting(cloud=self.engine is self._cloud)  # now on the voice
        self._incoming.put_nowait(_Sentence(text, record))

    def waiting(self, *, cloud: bool = True) -> None:
        """A stage starts waiting on an engine: the silence allowed before the wait
        notice counts from now. Only a cloud engine can stall; on-device work
        (Piper, Vosk) is never cut short by the notice."""
        self._waiting_since = time.monotonic()
        self._waiting_on_cloud = cloud
        self._wait_changed.set()

    def announce_wait(self) -> None:
        """Say the wait notice now, ahead of every queued sentence (once per answer,
        and only while nothing has played yet)."""
        if self._notice is None and self._wait_notice and self._piper is not None:
            self._notice = asyncio.create_task(self._say_notice(), name="tts-notice")

    async def finish(self) -> None:
        """No more sentences: wait until all of them have left the speaker."""
        self._incoming.put_nowait(None)
        await asyncio.gather(*self._tasks)
        self._watcher.cancel()
        if self._notice is not None:
            await self._notice
        if self._stream is not None:
            self._stream.end()
            await self._stream.drained()
            self._note_first_audio(self._stream)

    async def cancel(self) -> None:
        """Stop synthesizing and close every TTS stream. The queued audio is the
        player's: whoever cancels a turn calls ``player.stop()``."""
        tasks = [*self._tasks, self._watcher,
                 *(t for t in [self._notice, *(s.task for s in self._in_hand)] if t)]
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=CANCEL_DEADLINE)
        if stuck:
            log.warning("TTS tasks ignored cancellation for %.1f s: %s", CANCEL_DEADLINE,
                        [t.get_name() for t in stuck])
        if self._stream is not None:
            self._stream.end()
            self._note_first_audio(self._stream)

    def _note_first_audio(self, stream: PlaybackStream) -> None:
        """When the answer's first audio was queued for the device, and when the
        device took it: the device's period lies between the two."""
        if stream.first_queued_at is not None:
            self.timings["audio_queued"] = stream.first_queued_at
        if stream.first_frame_at is not None:
            self.timings["first_audio"] = stream.first_frame_at

    @property
    def spoken(self) -> bool:
        """Some audio of this answer went to the speaker."""
        return self._stream is not None and self._stream.first_frame_at is not None

    def text(self, *, heard_by: float | None = None, answer_only: bool = False) -> str:
        """What was spoken: every sentence handed to the speaker, or with ``heard_by``
        only those whose audio had finished playing by then (an interrupted answer)."""
        return " ".join(
            s.text for s, ends in self._played
            if (heard_by is None or ends <= heard_by) and (s.record or not answer_only))

    # --- tasks ---------------------------------------------------------------------

    async def _watch_silence(self) -> None:
        """Announce the wait once a cloud stage has kept the speaker silent too long."""
        while self._stream is None:
            left = None
            if self._waiting_on_cloud:
                left = self._waiting_since + WAIT_NOTICE_AFTER - time.monotonic()
                if left <= 0:
                    self.announce_wait()
                    return
            self._wait_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._wait_changed.wait()

    async def _say_notice(self) -> None:
        assert self._piper is not None and self._wait_notice is not None
        try:
            # Piper remembers this phrase (TurnRunner.prewarm), so it is ready at once.
            pcm = b"".join([c async for c in self._piper.synthesize(self._wait_notice)])
        except Exception:
            log.exception("the wait notice could not be synthesized")
            return
        await self._held()
        if self._stream is None:  # the answer itself may have started meanwhile
            self._write(pcm, self._piper)
            self._played.append((_Sentence(self._wait_notice, record=False), self._clock))

    async def _start_all(self) -> None:
        while (sentence := await self._incoming.get()) is not None:
            await self._slots.acquire()
            self._in_hand.append(sentence)
            self._synthesize(sentence, self.engine)
            self._ready.put_nowait(sentence)
        self._ready.put_nowait(None)

    def _synthesize(self, sentence: _Sentence, engine: TextToSpeech | None) -> None:
        if sentence.task is not None:
            sentence.task.cancel()
        sentence.engine = engine
        sentence.chunks = _buffer()
        if engine is None or self._full:
            sentence.chunks.put_nowait(None)
            return
        sentence.task = asyncio.create_task(self._fill(sentence, engine),
                                            name=f"tts-{engine.name}")

    async def _fill(self, sentence: _Sentence, engine: TextToSpeech) -> None:
        """Synthesize into the sentence's own buffer; a failure goes into the buffer
        too, so the player meets it in order and decides about failover there."""
        chunks = sentence.chunks
        stream = engine.synthesize(sentence.text)
        if engine is self._cloud:
            stream = timed(stream, first=self._first_byte_timeout, gap=TTS_GAP_SECONDS,
                           error=TtsCloudError)
        try:
            with log_context(stage="tts"):
                async with contextlib.aclosing(stream):
                    async for pcm in stream:
                        if pcm:
                            self.timings.setdefault("tts_first_byte", time.monotonic())
                            await chunks.put(pcm)  # waits while the buffer is full
        except Exception as exc:
            await chunks.put(exc)
            return
        await chunks.put(None)

    async def _held(self) -> None:
        if self._hold is not None:
            await asyncio.shield(self._hold)  # shared: our cancellation must not cancel it
            # The first to see it (the answer or the wait notice) says when it was released.
            self.timings.setdefault("confirmed", time.monotonic())

    async def _play_all(self) -> None:
        await self._held()
        while (sentence := await self._ready.get()) is not None:
            try:
                await self._play(sentence)
            finally:
                self._in_hand.remove(sentence)
                self._slots.release()

    async def _play(self, sentence: _Sentence) -> None:
        carry = b""  # an odd byte split across chunks belongs to the next sample
        while not self._full:
            item = await sentence.chunks.get()
            if item is None:
                break
            if isinstance(item, Exception):
                if not self._fail_over(sentence, item):
                    return
                carry = b""
                continue
            pcm = carry + item
            carry = pcm[len(pcm) & ~1:]
            self._write(pcm[: len(pcm) & ~1], sentence.engine)
            if self._audio_seconds > MAX_ANSWER_AUDIO_SECONDS:
                self._cut_off()
            elif self._stream is not None:
                await self._stream.room(PLAYBACK_AHEAD_SECONDS)
        if self._full:
            return  # cut off: this sentence did not play whole, and is not remembered
        if sentence.engine is self._cloud:
            self._failover.succeeded("tts")
        self._played.append((sentence, self._clock))

    def _cut_off(self) -> None:
        """MAX_ANSWER_AUDIO_SECONDS reached: stop synthesizing; what played stays."""
        log.warning("answer cut off after %.0f s of audio (MAX_ANSWER_AUDIO_SECONDS)",
                    self._audio_seconds)
        self._full = True
        for sentence in self._in_hand:
            if sentence.task is not None:
                sentence.task.cancel()

    def _fail_over(self, sentence: _Sentence, error: Exception) -> bool:
        """Switch the rest of the answer to Piper and speak this sentence again with
        it; True if there is something to retry with."""
        failed = sentence.engine
        if failed is not self._cloud or self._piper is None:
            log.error("TTS %s failed on %r: %s", getattr(failed, "name", None),
                      sentence.text, error, exc_info=error)
            return False
        self._failover.failed("tts", error, to=self._piper.name)
        self._cloud = None
        self.waiting(cloud=False)
        # The sentence in hand is repeated whole even if part of it already played:
        # half a sentence in one voice and the rest in another is harder to follow
        # than hearing its start twice. Sentences synthesizing ahead restart too.
        for other in self._in_hand:
            if other.engine is failed:
                self._synthesize(other, self._piper)
        return True

    def _write(self, pcm: bytes, engine: TextToSpeech | None) -> None:
        if not pcm or engine is None:
            return
        if self._stream is None:
            self._stream = self._player.stream(engine=engine.name)
        self._stream.engine = engine.name  # the voice now speaking (TTS failover, notice)
        if self._stream.stopped:
            return  # stopped by the user: whoever stopped it is cancelling this turn
        now = time.monotonic()
        seconds = len(pcm) / 2 / engine.sample_rate
        self._clock = max(self._clock, now) + seconds
        self._audio_seconds += seconds
        self._stream.write(pcm, engine.sample_rate)
