"""One turn: the utterance in, a spoken answer out, whatever fails on the way.

STT (cloud, else Vosk on the same audio) -> a local intent or the cloud LLM,
streamed sentence by sentence -> TTS (cloud, else Piper) -> the speaker. Every
cloud stage is skipped while its circuit breaker is open, and a stage that fails
mid-turn hands over to the on-device engine with a ``failover`` event, so every
turn ends in speech. The turn is one cancellable unit: cancelling ``run()``
closes the LLM and TTS streams at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_agent.agent.answer import RememberedPhrases, SpokenAnswer, TextToSpeech
from edge_agent.agent.failover import Failover, Hold, timed
from edge_agent.config import Settings
from edge_agent.errors import LlmCloudError, SttCloudError
from edge_agent.events import EventBus
from edge_agent.intents.tools import Toolbox, actions_after
from edge_agent.logsetup import log_context
from edge_agent.text import SentenceChunker, clean_for_speech
from edge_agent.wake import strip_wake_phrase

if TYPE_CHECKING:
    from edge_agent.audio import Player
    from edge_agent.cloud import Conversation
    from edge_agent.intents import LocalIntents
    from edge_agent.net import Connectivity

log = logging.getLogger(__name__)

STT_HEDGE_SECONDS = 2.0
"""Cloud STT slower than this starts Vosk on the same audio (a short utterance
takes well under a second in the cloud)."""
STT_HEDGE_GRACE_SECONDS = 1.0
"""Once Vosk has a transcript, the cloud's (better) one is waited for this much longer."""
MAX_TURN_SECONDS = 300.0
"""A turn ends by then, whatever the servers do (a model dripping a token just inside
``llm_idle`` forever): what was heard stays, the rest is dropped. The longest answer
the other caps allow takes about four minutes to say."""
REPLY_CHARS_PER_TOKEN = 16
"""Text streamed per ``max_tokens`` token (English averages about 4 characters): a
reply longer than that is a server ignoring ``max_tokens``; it is cut off there."""

NOT_CAUGHT = "Sorry, I didn't catch that."
ONE_MOMENT = "One moment."
NO_STT = "Sorry, I can't understand speech right now."
LOST_CONNECTION = "Sorry, I lost my connection."
NO_ANSWER = "Sorry, I have no answer to that."
CLOUD_TROUBLE = "Sorry, I can't get an answer from the cloud right now."
TOO_LONG = "Sorry, that answer ran too long."

# What speech recognizers return for noise or silence: sound tags ("[BLANK_AUDIO]",
# "(music)"), hesitations, and Whisper's habitual "you" on an empty clip.
_TAGS = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")
_NOISE_WORDS = frozenset({"you", "uh", "um", "hmm", "mm", "ah", "oh", "huh", "mhm"})


def is_meaningful(transcript: str) -> bool:
    """False for an empty or noise-only transcript, which must not reach the LLM."""
    words = re.findall(r"\w+", _TAGS.sub(" ", transcript).lower())
    return bool(words) and not set(words) <= _NOISE_WORDS


class SpeechToText(Protocol):
    name: str

    async def transcribe(self, audio: np.ndarray) -> str: ...


class ChatModel(Protocol):
    name: str

    def reply(self, messages: list[dict], tools: Toolbox) -> AsyncIterator[str]: ...


@dataclass
class TurnResult:
    transcript: str
    transcript_engine: str
    """"cloud", "vosk", or "none" when no recognizer could run."""
    reply: str
    """Everything spoken, notices included."""
    reply_engine: str
    """"cloud" (the LLM), "local" (an intent or a fixed phrase), "offline" (the
    offline notice because the cloud could not answer)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Monotonic timestamps: end_of_speech, stt_done, llm_first_token,
    first_sentence, tts_first_byte, confirmed (a speculative answer released),
    audio_queued, first_audio, done (those that happened)."""
    spoken: bool = False
    """Some speech reached the speaker."""


class TurnRunner:
    """Runs turns and stand-alone announcements through the engines at hand. The
    engines are optional: a device without a key or a model still answers what it can."""

    def __init__(
        self,
        settings: Settings,
        bus: EventBus,
        player: Player,
        *,
        connectivity: Connectivity,
        cloud_stt: SpeechToText | None,
        vosk: SpeechToText | None,
        cloud_llm: ChatModel | None,
        cloud_tts: TextToSpeech | None,
        piper: TextToSpeech | None,
        intents: LocalIntents,
        toolbox: Toolbox,
        conversation: Conversation,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.player = player
        self.connectivity = connectivity
        cloud_on = settings.cloud.enabled
        self.cloud_stt = cloud_stt if cloud_on else None
        self.vosk = vosk
        self.cloud_llm = cloud_llm if cloud_on else None
        self.cloud_tts = cloud_tts if cloud_on else None
        self.piper: RememberedPhrases | None = (
            RememberedPhrases(piper, self._notices(intents)) if piper else None)
        self.intents = intents
        self.toolbox = toolbox
        self.conversation = conversation

    # --- public ------------------------------------------------------------------

    async def prewarm(self) -> None:
        """Rehearse a cloud turn in memory (edge_agent.cloud.warm), so the first
        real turn pays no first-use setup, and synthesize the offline notices with
        Piper, so a failover speaks them at once. Optional; takes about a second
        of CPU, so call it in the background at start."""
        if self.cloud_llm is not None:
            from edge_agent.cloud.warm import rehearse  # the HTTP stack: only with a cloud

            await rehearse(self.settings.cloud, self.toolbox)
        if self.piper is not None:
            await self.piper.prewarm()

    async def run(
        self,
        audio: np.ndarray,
        *,
        end_of_speech: float,
        turn_id: int,
        vosk_result: Awaitable[str] | None = None,
        confirmed: asyncio.Future[None] | None = None,
        streamed: Awaitable[str] | None = None,
    ) -> TurnResult:
        """Answer the utterance ``audio`` (16 kHz mono int16). ``vosk_result`` is the
        live Vosk transcript when offline.stt_mode is "parallel"; ``streamed`` the
        cloud's, streamed while the user spoke (cloud.stt_streaming). ``confirmed``
        makes it a speculative answer: recognized, answered and synthesized now,
        but nothing is played, no tool acts and no transcript is announced before
        it is done; cancelled before that, the turn leaves no trace."""
        # began: the end of the turn (or a speculative pause) handed it over.
        timings = {"end_of_speech": end_of_speech, "began": time.monotonic()}
        failover = Failover(self.bus, self.connectivity, turn_id)
        # A question is waited on (a stall says "One moment."); an announcement is not.
        answer = self._answer(failover, timings, wait_notice=ONE_MOMENT, hold=confirmed)
        with actions_after(confirmed):
            return await self._run(audio, vosk_result, failover, answer, timings, turn_id,
                                   confirmed, streamed)

    async def _run(
        self, audio: np.ndarray, vosk_result: Awaitable[str] | None, failover: Failover,
        answer: SpokenAnswer, timings: dict[str, float], turn_id: int,
        confirmed: asyncio.Future[None] | None, streamed: Awaitable[str] | None,
    ) -> TurnResult:
        transcript, stt_engine, reply_engine = "", "none", "offline"
        limit = asyncio.timeout(MAX_TURN_SECONDS)
        try:
            async with limit:
                transcript, stt_engine = await self._transcribe(audio, vosk_result, failover,
                                                                answer, streamed)
                # The utterance starts at the detector's estimate of the wake phrase's
                # end; recognizers sometimes still hear its tail ("jarvis, what time...").
                transcript = strip_wake_phrase(transcript, self.settings.wake.models)
                timings["stt_done"] = time.monotonic()
                self._emit_after(confirmed, "transcript", text=transcript, engine=stt_engine,
                                 turn_id=turn_id)
                if stt_engine == "none":
                    reply_engine = "offline"
                    problem = self._key_problem()
                    answer.say(f"{problem}." if problem else NO_STT, record=False)
                elif not is_meaningful(transcript):
                    # The user spoke (the endpointer saw speech) and is waiting: a short
                    # apology tells them to repeat; silence would leave them guessing.
                    reply_engine = "local"
                    answer.say(NOT_CAUGHT, record=False)
                else:
                    reply_engine = await self._reply(transcript, answer, failover, timings)
                await answer.finish()
        except BaseException as exc:  # cancelled (barge-in, shutdown) or a device failure
            await answer.cancel()
            heard = answer.text(heard_by=time.monotonic(), answer_only=True)
            self._remember(transcript, heard)
            if not (isinstance(exc, TimeoutError) and limit.expired()):
                raise
            log.warning("turn %s cut off after %g s (MAX_TURN_SECONDS)", turn_id,
                        MAX_TURN_SECONDS)
            reply = answer.text(heard_by=time.monotonic())
        else:
            reply = answer.text()
            self._remember(transcript, answer.text(answer_only=True))
        timings["done"] = time.monotonic()
        result = TurnResult(transcript, stt_engine, reply, reply_engine, timings,
                            answer.spoken)
        self._announce(result, turn_id)
        return result

    async def speak(self, text: str, *, turn_id: int | None = None) -> bool:
        """Say ``text`` (a timer, a notice, ``edge-agent say``) through the TTS chain
        with failover; True if audio played."""
        answer = self._answer(Failover(self.bus, self.connectivity, turn_id), {})
        try:
            for sentence in _sentences(text):
                answer.say(sentence)
            await answer.finish()
        except BaseException:
            await answer.cancel()
            raise
        return answer.spoken

    # --- stages --------------------------------------------------------------------

    async def _transcribe(
        self, audio: np.ndarray, vosk_result: Awaitable[str] | None, failover: Failover,
        answer: SpokenAnswer, streamed: Awaitable[str] | None = None,
    ) -> tuple[str, str]:
        offline = asyncio.ensure_future(vosk_result) if vosk_result is not None else None
        offline_engine = "vosk" if offline is not None or self.vosk is not None else "none"
        cloud_stt = self.cloud_stt if failover.allow("stt") else None
        streaming = asyncio.ensure_future(streamed) if streamed is not None else None
        answer.waiting(cloud=cloud_stt is not None)
        try:
            if cloud_stt is not None and streaming is not None:
                text = await self._streamed(streaming, failover)
                if text is not None:
                    failover.succeeded("stt")
                    return text.strip(), cloud_stt.name
            if cloud_stt is not None:
                limit = self.settings.cloud.timeouts.stt
                with log_context(stage="stt"):
                    cloud = asyncio.ensure_future(cloud_stt.transcribe(audio))
                try:
                    async with asyncio.timeout(limit):
                        offline = await self._hedge(cloud, offline, audio)
                        text = await cloud
                except TimeoutError:
                    error: Exception = SttCloudError(f"no transcript after {limit:g} s",
                                                     offline=True)
                except Exception as exc:
                    error = exc
                else:
                    failover.succeeded("stt")
                    return text.strip(), cloud_stt.name
                finally:
                    cloud.cancel()
                failover.failed("stt", error, to=offline_engine)
                if offline is None and offline_engine == "vosk":
                    # Vosk decodes the whole utterance only now, which takes seconds on
                    # a Pi: say so instead of leaving the user in unexplained silence.
                    answer.announce_wait()
                answer.waiting(cloud=False)
            if offline_engine == "none":
                return "", "none"
            try:
                if offline is not None:
                    text = await offline
                else:
                    assert self.vosk is not None
                    text = await self.vosk.transcribe(audio)
            except Exception:
                log.exception("offline speech recognition failed")
                text = ""
            return text.strip(), offline_engine
        finally:
            if offline is not None:
                offline.cancel()  # a cloud transcript (or barge-in) made it unnecessary
            if streaming is not None:
                streaming.cancel()

    async def _streamed(self, streaming: asyncio.Future[str], failover: Failover) -> str | None:
        """The transcript streamed while the user spoke, or None after a failure
        (a ``failover`` event; the upload follows). Not reported to the breaker: a
        provider without the Realtime API must not block the upload that works.
        The wait is capped at STT_HEDGE_SECONDS: a streamed transcript is due a
        fraction of a second after the end of speech, and the upload still has its
        own full timeout and hedge after it."""
        limit = min(self.settings.cloud.timeouts.stt, STT_HEDGE_SECONDS)
        try:
            async with asyncio.timeout(limit):
                return await streaming
        except TimeoutError:
            reason = f"no streamed transcript {limit:g} s after the end of speech"
        except SttCloudError as exc:
            reason = exc.reason
        except Exception as exc:  # a bug in the stream must not cost the turn its upload
            log.exception("streaming recognition failed")
            reason = f"unexpected {type(exc).__name__}: {exc}"
        log.warning("turn %s: streaming speech recognition failed (%s); uploading the "
                    "utterance instead", failover.turn_id, reason)
        self.bus.emit("failover", stage="stt", **{"from": "stream"}, to="upload",
                      reason=reason, turn_id=failover.turn_id)
        return None

    async def _hedge(self, cloud: asyncio.Future[str], offline: asyncio.Future[str] | None,
                     audio: np.ndarray) -> asyncio.Future[str] | None:
        """Wait for the cloud transcript, hedging a slow one: past STT_HEDGE_SECONDS
        Vosk works on the same audio (unless it already runs live), and once Vosk has
        a transcript the cloud's better one gets STT_HEDGE_GRACE_SECONDS more. A
        stalled cloud then costs seconds, not the whole STT timeout. Returns the
        offline result in progress; raises SttCloudError when the cloud lost."""
        await asyncio.wait({cloud}, timeout=STT_HEDGE_SECONDS)
        if cloud.done() or (offline is None and self.vosk is None):
            return offline
        if offline is None:
            assert self.vosk is not None
            offline = asyncio.ensure_future(self.vosk.transcribe(audio))
        await asyncio.wait({cloud, offline}, return_when=asyncio.FIRST_COMPLETED)
        if not cloud.done():
            await asyncio.wait({cloud}, timeout=STT_HEDGE_GRACE_SECONDS)
        if cloud.done() or offline.cancelled() or offline.exception() is not None:
            return offline  # the cloud answered, or Vosk has nothing better to offer
        raise SttCloudError(
            f"no transcript after {STT_HEDGE_SECONDS + STT_HEDGE_GRACE_SECONDS:g} s "
            "and Vosk had one", offline=False)

    async def _reply(
        self, transcript: str, answer: SpokenAnswer, failover: Failover,
        timings: dict[str, float],
    ) -> str:
        """Speak the answer to ``transcript``; returns the reply engine. A local
        answer may be "" (stop, mute): the device acted and says nothing."""
        local_first = self.settings.offline.prefer_local or self.cloud_llm is None
        local = await self.intents.answer(transcript) if local_first else None
        if local is None and self.cloud_llm is not None and failover.allow("llm"):
            error = await self._stream_llm(transcript, answer, failover, timings)
            if error is None:
                return "cloud"
            if not local_first:
                local = await self.intents.answer(transcript)
            failover.failed("llm", error, to="offline" if local is None else "local")
        if local is not None:
            answer.say(local)
            return "local"
        if self.cloud_llm is not None and self.connectivity.online:
            # Reachable but failing (429, a malformed reply): not "offline", and
            # likely to pass, so no list of what works offline.
            answer.say(CLOUD_TROUBLE, record=False)
        else:
            # offline_help() is the honest notice: it says the device is offline and
            # what it can still do, so no separate "I can't reach the cloud" first.
            for sentence in _sentences(self.intents.offline_help(why=self._key_problem())):
                answer.say(sentence, record=False)
        return "offline"

    async def _stream_llm(
        self, transcript: str, answer: SpokenAnswer, failover: Failover,
        timings: dict[str, float],
    ) -> Exception | None:
        """Stream the LLM's answer into ``answer``. A failure before the first token
        is returned for the caller to route; after it, what was said stands and a
        short notice ends the answer."""
        assert self.cloud_llm is not None
        limits = self.settings.cloud.timeouts
        chunker = SentenceChunker()
        hold = Hold()  # a tool running inside the stream is no silence of the model's
        deltas = timed(
            self.cloud_llm.reply(self.conversation.messages(transcript),
                                 self.toolbox.around_calls(hold.paused)),
            first=limits.llm_first_token, gap=limits.llm_idle,
            error=LlmCloudError, hold=hold)
        started = False
        room = self.settings.cloud.max_tokens * REPLY_CHARS_PER_TOKEN
        answer.waiting()
        try:
            with log_context(stage="llm"):
                async with contextlib.aclosing(deltas):
                    async for delta in deltas:
                        if not delta:
                            continue
                        if not started:
                            timings["llm_first_token"] = time.monotonic()
                            started = True
                        room -= len(delta)
                        for sentence in chunker.feed(delta[:len(delta) + min(0, room)]):
                            answer.say(sentence)
                        if room < 0:
                            raise _TooLongError(
                                "the reply went on past "
                                f"{self.settings.cloud.max_tokens * REPLY_CHARS_PER_TOKEN} "
                                "characters", partial=True)
        except Exception as exc:
            if not started:
                return exc
            # The unfinished sentence in the chunker is dropped: half a sentence
            # is worse than none, and the notice says the answer was cut.
            failover.failed("llm", exc, to="offline")
            answer.say(TOO_LONG if isinstance(exc, _TooLongError) else LOST_CONNECTION,
                       record=False)
            return None
        failover.succeeded("llm")
        for sentence in chunker.flush():
            answer.say(sentence)
        if not started:
            answer.say(NO_ANSWER, record=False)
        return None

    # --- helpers -------------------------------------------------------------------

    def _key_problem(self) -> str | None:
        """The notice when the owner's key keeps the cloud out (missing or refused):
        it names what to fix, where "can't understand speech" would blame the wrong thing."""
        problem = self.connectivity.key_problem
        return f"I can't reach the cloud: {problem}" if problem else None

    @staticmethod
    def _notices(intents: LocalIntents) -> list[str]:
        """The fixed sentences a failover may say, as SpokenAnswer will ask for them."""
        texts = [ONE_MOMENT, NOT_CAUGHT, NO_STT, LOST_CONNECTION, NO_ANSWER, CLOUD_TROUBLE,
                 TOO_LONG, intents.offline_help()]
        return [clean_for_speech(s).strip() for text in texts for s in _sentences(text)]

    def _answer(self, failover: Failover, timings: dict[str, float], *,
                wait_notice: str | None = None,
                hold: asyncio.Future[None] | None = None) -> SpokenAnswer:
        return SpokenAnswer(
            self.player, failover, cloud_tts=self.cloud_tts, piper=self.piper,
            first_byte_timeout=self.settings.cloud.timeouts.tts_first_byte, timings=timings,
            wait_notice=wait_notice, hold=hold)

    def _emit_after(self, confirmed: asyncio.Future[None] | None, name: str,
                    **fields: object) -> None:
        """Emit now, or once a speculative turn is confirmed (never if discarded)."""
        if confirmed is None or confirmed.done():
            if confirmed is None or not confirmed.cancelled():
                self.bus.emit(name, **fields)
            return
        confirmed.add_done_callback(
            lambda done: None if done.cancelled() else self.bus.emit(name, **fields))

    def _remember(self, transcript: str, spoken: str) -> None:
        """The conversation holds only what the user actually heard."""
        if spoken:
            self.conversation.add_exchange(transcript, spoken)

    def _announce(self, result: TurnResult, turn_id: int) -> None:
        if result.reply:
            self.bus.emit("reply_text", text=result.reply, engine=result.reply_engine,
                          turn_id=turn_id)
        latency_ms = latencies_ms(result.timings)
        self.bus.emit("turn_done", timings=result.timings, latency_ms=latency_ms,
                      turn_id=turn_id, transcript_engine=result.transcript_engine,
                      reply_engine=result.reply_engine, spoken=result.spoken)
        log.info("%s", trail_line(result, turn_id, latency_ms.get("first_audio")))


TRAIL_CHARS = 100
"""What was heard and said is cut to this many characters in the log's turn line."""


def trail_line(result: TurnResult, turn_id: int, first_audio_ms: float | None) -> str:
    """The turn as one INFO line, so the journal reads like a transcript."""
    first = f"first audio after {first_audio_ms:.0f} ms" if first_audio_ms is not None else (
        "nothing played")
    return (f"turn {turn_id}: heard {_cut(result.transcript)} [{result.transcript_engine}], "
            f"said {_cut(result.reply)} [{result.reply_engine}], {first}")


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= TRAIL_CHARS else text[:TRAIL_CHARS - 1] + "…")


def latencies_ms(timings: dict[str, float]) -> dict[str, float]:
    """Milliseconds from the end of speech to each later stage in ``timings``
    (``began`` is bookkeeping, not a stage: a speculative turn begins at its pause)."""
    start = timings.get("end_of_speech")
    if start is None:
        return {}
    return {k: round((t - start) * 1000, 1) for k, t in timings.items()
            if k not in ("end_of_speech", "began")}


class _TooLongError(LlmCloudError):
    """The reply went on past what ``max_tokens`` allows."""


def _sentences(text: str) -> list[str]:
    chunker = SentenceChunker()
    return [*chunker.feed(text), *chunker.flush()]
