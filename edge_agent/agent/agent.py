"""The agent: owner of THE conversation state and the one place that decides
what a trigger (wake word, button, control socket) means in each state.

Every turn starts through ``_start``: idle -> listen; talking or thinking ->
barge in (stop playback first, cancel the turn with a deadline) then listen;
already listening or muted -> nothing, so button mashing never queues turns.
A conversation (a turn plus its follow-ups) is one cancellable task; a small
worker starts it, so a cancelled turn that lingers in a library is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent.audio import RingBuffer
from edge_agent.controls import ButtonAction
from edge_agent.errors import AudioDeviceError, BusyError, EdgeAgentError, StateError
from edge_agent.events import Event, EventBus
from edge_agent.faults import Faults
from edge_agent.footprint import process_memory
from edge_agent.intents.device import ring_announcement
from edge_agent.logsetup import log_context
from edge_agent.state import AgentState
from edge_agent.statefile import StateSaver, load_json, move_aside
from edge_agent.vad import EndOfTurnDetector, Outcome, Pause, TurnBounds

from .arbiter import AnswerAlways, WakeArbiter, phrase_level_dbfs
from .livestt import LiveCloudSTT
from .speculate import Speculation, Speculator
from .supervisor import cancel_within
from .turn import latencies_ms

if TYPE_CHECKING:
    import numpy as np

    from edge_agent.audio import Player
    from edge_agent.cloud.realtime import RealtimeSTT
    from edge_agent.config import Settings
    from edge_agent.controls import Earcons
    from edge_agent.intents.timers import Timer
    from edge_agent.net import Connectivity
    from edge_agent.offline import VoskSTT
    from edge_agent.wake import WakeDetector

log = logging.getLogger(__name__)

CANCEL_DEADLINE = 0.5
"""How long a cancelled turn may take to unwind before the next one starts anyway."""
ERROR_HOLD = 2.0
"""The error state stays this long after a failed turn, so the LED can show it."""
LISTEN_STALL = 3.0
"""A microphone silent this long while listening ends the turn (error, not a hang)."""
LAST_TURNS = 5
MAX_SAYS = 4
"""``say`` requests speaking or waiting at once; more are refused (BusyError): each
holds a TTS stream and its audio, and a flood of them starved the wake word."""
MUTE_FILE = "mute.json"


class TurnPipeline(Protocol):
    """The turn pipeline (edge_agent.agent.turn.TurnRunner) as the agent uses it."""

    async def run(self, audio: np.ndarray, *, end_of_speech: float, turn_id: int,
                  vosk_result: Awaitable[str] | None = None,
                  confirmed: asyncio.Future[None] | None = None,
                  streamed: Awaitable[str] | None = None) -> Any: ...
    async def speak(self, text: str, *, turn_id: int | None = None) -> bool: ...


@dataclass(frozen=True)
class _Request:
    source: str
    start_index: int
    """Where the utterance starts: the wake phrase's end, or pre-roll before a press."""
    trigger_index: int
    """ring.total when the trigger came; timeouts count from here, not from the pre-roll."""
    push_to_talk: bool = False


@dataclass
class TurnRecord:
    """What status() shows about a finished turn."""

    id: int
    source: str
    transcript: str = ""
    engine: str = ""
    reply: str = ""
    reply_engine: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``latency_ms``: each stage after the end of speech (``timings`` holds clock
        readings, meaningless outside the daemon)."""
        data = dataclasses.asdict(self)
        data["latency_ms"] = latencies_ms(self.timings)
        del data["timings"]
        return data



class Agent:
    """State machine of the speaker. Create it inside the running event loop; call
    its trigger methods on the loop thread (PushButton already does)."""

    def __init__(
        self,
        settings: Settings,
        bus: EventBus,
        *,
        ring: RingBuffer,
        player: Player,
        wake: WakeDetector,
        earcons: Earcons | None = None,
        connectivity: Connectivity | None = None,
        turns: TurnPipeline | None = None,
        vosk: VoskSTT | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.ring = ring
        self.player = player
        self.wake = wake
        self.earcons = earcons
        self.connectivity = connectivity
        self.turns = turns
        """Set once after construction when the pipeline's tools need this agent."""
        self.vosk = vosk
        """Run live on every utterance when offline.stt_mode is "parallel"."""
        self.cloud_stream: RealtimeSTT | None = None
        """Streams every utterance to the cloud while it is spoken (cloud.stt_streaming)."""
        self.arbiter: WakeArbiter = AnswerAlways()
        """Asked before a wake-word turn: another speaker may answer this one."""
        self.status_extras: dict[str, Callable[[], Any]] = {}
        """More of status(), by key: parts of the daemon the agent does not own (MQTT)."""
        self.last_answer = ""
        self.last_turns: deque[TurnRecord] = deque(maxlen=LAST_TURNS)
        self.counts = {"turns": 0, "barge_ins": 0, "failovers": 0, "overruns": 0,
                       "speculations_wasted": 0}
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._started = time.monotonic()
        self._state = AgentState.IDLE
        self._last_turn_id = 0
        self._answering: asyncio.Task | None = None
        """A confirmed speculative answer's own task (its tools act for the turn)."""
        self._pending: _Request | None = None
        self._wakeup = asyncio.Event()
        self._turn_task: asyncio.Task | None = None
        self._current: _Request | None = None
        self._press_request: _Request | None = None
        self._error_timer: asyncio.TimerHandle | None = None
        self._speeches: set[asyncio.Task] = set()
        self._says = 0
        self._due: list[Timer] = []
        self._ringer: asyncio.Task | None = None
        self._answered_until = 0
        """ring.total when the last answer ended: pre-roll stops there."""
        self._device_ok = {"input": True, "output": player.healthy}
        """Microphone and speaker work (from "audio_device" events; the speaker was
        opened before the agent existed, so it starts from its health)."""
        self._release_index: int | None = None
        self.faults = faults if faults is not None else Faults(bus)
        """Lasting failures (state not saved, event log, player): status and error state."""
        self._muted = False
        self._mute_saver = StateSaver(self._mute_path, self._mute_save_failed)
        self._unsubscribe = bus.subscribe(self._on_event)
        if not self._healthy:  # a fault or a speaker that failed before we existed
            self._set_state(AgentState.ERROR)
        if self._load_muted():
            with contextlib.suppress(StateError):  # muted all the same; fault in status
                self.set_muted(True)

    # --- state -------------------------------------------------------------------

    @property
    def state(self) -> AgentState:
        return self._state

    def _set_state(self, state: AgentState) -> None:
        if self._muted and state is not AgentState.MUTED:
            return  # only unmuting leaves MUTED (a turn winding down must not)
        if state is AgentState.IDLE and not self._healthy:
            state = AgentState.ERROR  # idle but deaf, mute or failing: the owner must see it
        if state is self._state:
            return
        previous, self._state = self._state, state
        self.bus.emit("state", state=str(state), previous=str(previous))
        log.info("state %s -> %s", previous, state)  # after: the journal's STATE is new

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def busy(self) -> bool:
        """A conversation task is running (listening, thinking or speaking)."""
        return self._turn_task is not None and not self._turn_task.done()

    # --- Device protocol (device tools call these) -------------------------------

    @property
    def volume(self) -> float:
        return self.player.volume

    @volume.setter
    def volume(self, value: float) -> None:
        self.player.volume = max(0.0, min(1.0, value))

    @property
    def online(self) -> bool:
        return self.connectivity.online if self.connectivity is not None else False

    def stop(self) -> None:
        """Stop talking: playback, a ringing timer's announcement, and the conversation,
        unless it is the conversation's own "stop" tool asking (it ends by itself)."""
        self.player.stop()
        current = asyncio.current_task()
        for task in self._speeches:
            if task is not current:
                task.cancel()
        if self._turn_task is not None and current not in (self._turn_task, self._answering):
            self._cancel_turn()
            if self._state in (AgentState.SPEAKING, AgentState.THINKING):
                self._set_state(AgentState.IDLE)

    def set_muted(self, muted: bool) -> None:
        """Mute is a privacy promise: the ring stores zeros, so no reader (wake word,
        STT, network) gets audio, and it survives restarts. Asked by the turn itself
        (the "mute" tool), the turn may still say its short confirmation.

        The change applies at once; StateError after it when it could not be saved
        (a mute that would not survive a restart, or an unmute that would not)."""
        if muted == self._muted:
            return
        self.ring.muted = muted
        if muted:
            self._set_state(AgentState.MUTED)
            self._muted = True
            if asyncio.current_task() not in (self._turn_task, self._answering):
                self.player.stop()
                self._cancel_turn()
        else:
            self._muted = False
            # The wake loop resets its detector itself when it resumes.
            self._set_state(AgentState.IDLE)
        self.bus.emit("mute", muted=muted)
        self._save_muted()

    # --- triggers ----------------------------------------------------------------

    def trigger(self, source: str = "control") -> None:
        """Start a turn as a button tap would, with pre-roll so the first word is in."""
        self._start(source, self._preroll_start())

    def on_press(self) -> None:
        """The button went down. While talking or thinking that is a barge-in, now,
        not at the release that makes it a tap: silence within 50 ms of the press."""
        if self._state in (AgentState.THINKING, AgentState.SPEAKING) or self.player.playing:
            self._start("button", self._preroll_start())
            self._press_request = self._pending

    def on_button(self, action: ButtonAction) -> None:
        pressed_into, self._press_request = self._press_request, None
        if action == ButtonAction.MUTE_TOGGLE:
            try:
                self.set_muted(not self._muted)
            except StateError:
                self._earcon("error")  # the fault is in status and the log
        elif action == ButtonAction.TAP:
            if pressed_into is None:  # else the press already barged in and listens
                self._start("button", self._preroll_start())
        elif action == ButtonAction.TALK_START:
            if pressed_into is not None and pressed_into is self._current:
                # Held after barging in: the same turn becomes push-to-talk.
                self._restart(dataclasses.replace(pressed_into, push_to_talk=True))
            else:
                self._start("button", self._preroll_start(), push_to_talk=True)
        elif (action == ButtonAction.TALK_END and self._state is AgentState.LISTENING
              and self._release_index is None):
            self._release_index = self.ring.total

    def _preroll_start(self) -> int:
        """Pre-roll, but never back into the last answer (the speaker's own voice);
        none at all when barging in (what was just heard is the speaker itself)."""
        if self._state in (AgentState.THINKING, AgentState.SPEAKING) or self.player.playing:
            return self.ring.total
        preroll = int(self.settings.audio.preroll_seconds * self.ring.rate)
        return max(0, self.ring.total - preroll, self._answered_until)

    def _start(self, source: str, start_index: int, *, push_to_talk: bool = False) -> None:
        state = self._state
        if state is AgentState.MUTED:
            log.info("%s ignored: muted", source)
            return
        if not self._device_ok["input"]:
            log.warning("%s ignored: the microphone is not working", source)
            self._earcon("error")
            return
        if state is AgentState.LISTENING:
            log.debug("%s ignored: already listening", source)
            return
        if state in (AgentState.THINKING, AgentState.SPEAKING):
            self._barge_in(source)
        self._restart(_Request(source, start_index, self.ring.total, push_to_talk))

    def _restart(self, request: _Request) -> None:
        self._cancel_turn()
        self._pending = request
        # Listening from now on, so further presses are ignored rather than queued.
        self._set_state(AgentState.LISTENING)
        self._wakeup.set()

    def _barge_in(self, source: str) -> None:
        self.player.stop()  # first: silence within 50 ms matters more than bookkeeping
        self.wake.set_playing(False)
        self._cancel_turn()
        self.counts["barge_ins"] += 1
        self.bus.emit("barge_in", source=source)

    def _cancel_turn(self) -> None:
        """Cancel the conversation and any announcement (say, timer) in flight."""
        self._pending = None
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
        for task in self._speeches:
            task.cancel()

    # --- long-lived jobs (run under the supervisor) -------------------------------

    async def run_wake(self) -> None:
        """Wake-word loop on its own reader. Inference runs in a thread of its own
        (nothing queued in the default pool can delay it); it is skipped while
        listening or muted (nothing to wake) to save CPU."""
        reader = self.ring.reader("wake")
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wake")
        loop = asyncio.get_running_loop()
        frame_samples = self.wake.FRAME_SAMPLES
        paused = False
        try:
            while True:
                frame = await reader.read(frame_samples)
                if self._state in (AgentState.LISTENING, AgentState.MUTED):
                    paused = True
                    continue
                wake = self.wake
                if paused:
                    wake.reset()  # stale features; its warm-up stops false wakes
                    paused = False
                detection = await loop.run_in_executor(worker, wake.process, frame,
                                                       reader.position)
                for miss in wake.diagnostics.unreported():
                    self.bus.emit("wake_near_miss", **miss.to_dict())
                for own in wake.ignored_as_own_voice():
                    self.bus.emit("wake_own_voice", model=own.model, engine=own.engine,
                                  score=round(own.score, 3), end_index=own.end_index)
                if detection is not None:
                    level = phrase_level_dbfs(self.ring, detection.end_index)
                    self.bus.emit("wake", model=detection.model, score=round(detection.score, 3),
                                  engine=detection.engine, end_index=detection.end_index,
                                  level_dbfs=round(level, 1))
                    engaged = self._state in (AgentState.THINKING, AgentState.SPEAKING)
                    if await self.arbiter.answer(detection, level_dbfs=level, engaged=engaged,
                                                 heard_at=self.ring.time_of(reader.position)):
                        self._start("wake", detection.end_index)
        finally:
            reader.close()
            worker.shutdown(wait=False, cancel_futures=True)

    async def run_turns(self) -> None:
        """Starts each requested conversation once the previous one has unwound."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                if self._turn_task is not None:
                    await cancel_within([self._turn_task], CANCEL_DEADLINE)
                request, self._pending = self._pending, None
                if request is None:
                    continue
                self._current = request
                self._turn_task = asyncio.create_task(
                    self._conversation(request), name=f"conversation-{request.source}")
        finally:
            if self._turn_task is not None:
                await cancel_within([self._turn_task], CANCEL_DEADLINE)

    async def close(self) -> None:
        self._unsubscribe()
        self._pending = None
        self._due.clear()
        # The turn, and announcements (say, timers) that would otherwise go on
        # speaking into a closed player past the stop budget.
        await cancel_within([t for t in (self._turn_task, self._ringer, *self._speeches)
                             if t is not None], CANCEL_DEADLINE)
        with contextlib.suppress(StateError):  # in status; the file keeps its last value
            self._save_muted()
        self._mute_saver.close()

    # --- a conversation: a turn and its follow-ups ---------------------------------

    async def _conversation(self, request: _Request) -> None:
        start, push_to_talk, follow_up = request.start_index, request.push_to_talk, False
        lead = max(0, request.trigger_index - start) / self.ring.rate
        while True:
            self._set_state(AgentState.LISTENING)
            if not follow_up:
                self._earcon("wake")
            spoken = await self._turn(request.source, start, lead=lead,
                                      push_to_talk=push_to_talk, follow_up=follow_up)
            if not spoken or self.settings.turn.follow_up_seconds <= 0 or self._muted:
                if self._state is not AgentState.ERROR:  # it clears itself
                    self._set_state(AgentState.IDLE)
                return
            start, lead, push_to_talk, follow_up = self.ring.total, 0.0, False, True

    async def _turn(self, source: str, start: int, *, lead: float, push_to_talk: bool,
                    follow_up: bool) -> bool:
        """Listen, then answer; True when an answer was spoken."""
        live = self._live_vosk(start)
        stream = self._live_cloud(start)
        speculator = None if push_to_talk else self._speculator(start, live, stream)
        streamed = None
        try:
            try:
                bounds = await self._listen(start, lead=lead, push_to_talk=push_to_talk,
                                            follow_up=follow_up, speculator=speculator,
                                            stream=stream)
            except AudioDeviceError as exc:
                self.report_error("listen", str(exc))
                return False
            if bounds.outcome == Outcome.NO_SPEECH or bounds.speech_start_index is None:
                log.info("no speech (%s)", bounds.outcome)
                return False
            if live is not None:
                live[1].set_result(bounds.end_index)
            speculation = speculator.take(bounds) if speculator is not None else None
            if stream is not None:  # a confirmed guess already has its transcript
                streamed = stream.end(None if speculation else bounds.end_index,
                                      bounds.voiced_end_index)
            return await self._answer(source, bounds, live[0] if live is not None else None,
                                      speculation, streamed)
        finally:
            if speculator is not None:
                await speculator.close()
            if streamed is not None:
                streamed.cancel()
            if stream is not None:
                await stream.aclose()
            if live is not None and not live[0].done():
                live[0].cancel()  # not needed (cloud answered) or the turn was cut

    def _speculator(self, start: int, live: tuple[asyncio.Task, asyncio.Future] | None,
                    stream: LiveCloudSTT | None) -> Speculator | None:
        """Speculative answers for a turn listened to from ``start`` (turn.speculative)."""
        turns, settings = self.turns, self.settings.turn
        if turns is None or not settings.speculative:
            return None

        def begin(pause: Pause, confirmed: asyncio.Future[None]) -> asyncio.Task:
            audio = self.ring.read_range(start, pause.end_index)
            # Shielded: a discarded guess must not cancel the live Vosk the turn shares.
            vosk = asyncio.shield(live[0]) if live is not None else None
            turn_id = self._last_turn_id + 1  # the id the turn gets if this is confirmed
            # The stream commits at its own pause (COMMIT_PAUSE, shorter than the
            # default speculative one): with no word since, this takes those segments;
            # if the user goes on, only the rest is committed later.
            streamed = (stream.transcript(pause.end_index, pause.voiced_end_index)
                        if stream is not None else None)

            async def answer() -> Any:
                result = await turns.run(
                    audio, end_of_speech=self.ring.time_of(pause.end_index), turn_id=turn_id,
                    vosk_result=vosk, confirmed=confirmed, streamed=streamed)
                self._note_result(turn_id, result)  # it only returns once confirmed
                return result

            with log_context(turn_id=turn_id):
                task = asyncio.create_task(answer(), name="speculative-turn")
            if streamed is not None:  # discarded before it began, it never awaits it
                task.add_done_callback(lambda _: streamed.cancel())
            return task

        return Speculator(settings, self.bus, begin)

    def _live_vosk(self, start: int) -> tuple[asyncio.Task, asyncio.Future] | None:
        """In "parallel" mode, Vosk hears the utterance while it is spoken, so its
        transcript is ready at the end of speech if the cloud fails. Returns the
        transcript task and the future that will hold the utterance's end index."""
        if self.vosk is None or self.settings.offline.stt_mode != "parallel":
            return None
        end: asyncio.Future[int] = self._loop.create_future()
        task = asyncio.create_task(self._transcribe_live(self.vosk, start, end),
                                   name="vosk-live")
        return task, end

    def _live_cloud(self, start: int) -> LiveCloudSTT | None:
        """With cloud.stt_streaming, the cloud hears the utterance while it is spoken."""
        client = self.cloud_stream
        if client is None or not self.settings.cloud.stt_streaming or not client.offered or (
                self.connectivity is not None and not self.connectivity.allow("stt")):
            return None
        return LiveCloudSTT(client, self.ring, start, self.bus,
                            turn_id=self._last_turn_id + 1)

    async def _transcribe_live(self, vosk: VoskSTT, start: int, end: asyncio.Future) -> str:
        stream = vosk.stream()
        reader = self.ring.reader("vosk", start=start)
        chunk = self.ring.rate // 5  # 200 ms: few thread hops, little delay at the end
        try:
            while not end.done() or reader.position < end.result():
                n = chunk if not end.done() else min(chunk, end.result() - reader.position)
                frame = await reader.read(n)
                await asyncio.to_thread(stream.feed, frame)
            return await asyncio.to_thread(stream.final)
        finally:
            reader.close()

    async def _listen(self, start: int, *, lead: float, push_to_talk: bool,
                      follow_up: bool, speculator: Speculator | None = None,
                      stream: LiveCloudSTT | None = None) -> TurnBounds:
        """Feed the end-of-turn detector from ``start`` until it decides, or until the
        button is released (push-to-talk: the release ends the turn, pauses do not).
        ``lead`` is audio before the trigger (pre-roll, wake detection lag): the
        timeouts start at the trigger, so it is added to them. Every pause goes to
        the speculator and to the live ``stream`` (which commits at a short one)."""
        turn = self.settings.turn
        turn = dataclasses.replace(turn, no_speech_timeout=turn.no_speech_timeout + lead,
                                   max_seconds=turn.max_seconds + lead)
        if follow_up:
            turn = dataclasses.replace(turn, no_speech_timeout=turn.follow_up_seconds)
        if push_to_talk:
            # Held button: a pause is not the end; only the release or the length cap is.
            turn = dataclasses.replace(turn, end_silence=turn.max_seconds,
                                       no_speech_timeout=turn.max_seconds)
        detector = EndOfTurnDetector(turn, start_index=start, rate=self.ring.rate)
        self._release_index = None
        reader = self.ring.reader("turn", start=start)
        try:
            while True:
                release = self._release_index
                if release is not None and reader.position >= release:
                    return detector.release(release)
                try:
                    frame = await asyncio.wait_for(reader.read(detector.FRAME_SAMPLES),
                                                   LISTEN_STALL)
                except TimeoutError:
                    raise AudioDeviceError(
                        f"no audio for {LISTEN_STALL:g} s while listening") from None
                bounds = detector.process(frame, reader.position)
                if bounds is not None:
                    return bounds
                pause = detector.pause()
                if stream is not None:
                    stream.observe(pause)
                if speculator is not None:
                    speculator.observe(pause)
        finally:
            reader.close()

    async def _answer(self, source: str, bounds: TurnBounds,
                      vosk_result: Awaitable[str] | None,
                      speculation: Speculation | None = None,
                      streamed: Awaitable[str] | None = None) -> bool:
        """Run the turn pipeline on the utterance (or let the speculative answer
        already running on it play); True when an answer was spoken."""
        if self.turns is None:
            raise RuntimeError("Agent.turns was never set")
        ring = self.ring
        start_t, end_t = ring.time_of(bounds.start_index), ring.time_of(bounds.end_index)
        self.bus.emit("utterance", start=round(start_t, 6), end=round(end_t, 6),
                      duration=round(bounds.duration, 3), outcome=str(bounds.outcome),
                      start_index=bounds.start_index, end_index=bounds.end_index)
        self._earcon("end")
        self._set_state(AgentState.THINKING)
        turn_id = self._last_turn_id = self._last_turn_id + 1
        record = TurnRecord(turn_id, source)
        self.last_turns.append(record)
        self.counts["turns"] += 1
        try:
            with log_context(turn_id=turn_id):  # journal field TURN_ID on every record
                if speculation is not None:
                    self._answering = speculation.task
                    result = await speculation.confirm()
                else:
                    audio = ring.read_range(bounds.start_index, bounds.end_index)
                    result = await self.turns.run(
                        audio, end_of_speech=end_t, turn_id=turn_id, vosk_result=vosk_result,
                        streamed=streamed)
        except asyncio.CancelledError:
            self._answered_until = ring.total
            raise
        except Exception as exc:
            self._answered_until = ring.total
            log.exception("turn %d failed", turn_id)
            record.error = str(exc) or type(exc).__name__
            self.report_error("turn", record.error)
            return False
        finally:
            self._answering = None
        self._answered_until = ring.total
        if speculation is None:
            self._note_result(turn_id, result)
        return bool(result.spoken)

    def _note_result(self, turn_id: int, result: Any) -> None:
        """Fill the turn's record, in the same step as its ``turn_done`` event, so a
        status asked for on that event already shows the turn."""
        record = next((r for r in self.last_turns if r.id == turn_id), None)
        if record is not None:
            record.transcript, record.engine = result.transcript, result.transcript_engine
            record.reply, record.reply_engine = result.reply, result.reply_engine
            record.timings = dict(result.timings)
        if result.reply:
            self.last_answer = result.reply

    def report_error(self, where: str, message: str) -> None:
        """Something failed (a turn, a supervised job): the ``error`` event, and the
        error state with its earcon for ERROR_HOLD seconds, then idle again."""
        self.bus.emit("error", where=where, message=message)
        if self._state is AgentState.MUTED:
            return
        if self._state is not AgentState.ERROR:
            self._earcon("error")
        self._set_state(AgentState.ERROR)
        if self._error_timer is not None:
            self._error_timer.cancel()
        self._error_timer = self._loop.call_later(ERROR_HOLD, self._clear_error)

    def _clear_error(self) -> None:
        self._error_timer = None
        if self._state is AgentState.ERROR:
            self._set_state(AgentState.IDLE)

    # --- speaking outside a turn --------------------------------------------------

    async def announce(self, text: str) -> bool:
        """An announcement (Home Assistant): a chime first, so it does not start
        mid-word on someone who was not expecting the speaker to talk."""
        self._earcon("wake")
        return await self.say(text)

    async def say(self, text: str) -> bool:
        """Speak a text (control socket `say`); BusyError past MAX_SAYS at once."""
        if self._says >= MAX_SAYS:
            raise BusyError(f"{MAX_SAYS} say requests are already in progress; try later")
        self._says += 1
        try:
            return await self._speak(text)
        finally:
            self._says -= 1

    async def _speak(self, text: str) -> bool:
        """Speak a text (say, timers). Its own task, so barge-in, stop and mute can
        cancel it like a turn; False when it was cut off."""
        if self.turns is None:
            return False
        task = asyncio.create_task(self.turns.speak(text), name="say")
        self._speeches.add(task)
        task.add_done_callback(self._speeches.discard)
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
        return False if task.cancelled() else task.result()

    def ring_timer(self, timer: Timer) -> None:
        """Timers call this when one is done; it speaks even offline (Piper). One
        announcement at a time: timers due meanwhile are named together in the next."""
        self._due.append(timer)
        if self._ringer is None or self._ringer.done():
            self._ringer = self._loop.create_task(self._ring_due(), name="timer-announcement")
            self._ringer.add_done_callback(_log_failure)

    async def _ring_due(self) -> None:
        while self._due:
            due, self._due = self._due, []
            await self._speak(ring_announcement(due))

    # --- events from elsewhere ----------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # The player emits from its own thread; the state lives on the loop thread.
        if threading.get_ident() == self._loop_thread:
            self._handle_event(event)
        else:
            self._loop.call_soon_threadsafe(self._handle_event, event)

    def _handle_event(self, event: Event) -> None:
        name = event.name
        if name == "audio_out_start":
            self.wake.set_playing(True)
            if self._state in (AgentState.THINKING, AgentState.IDLE):
                self._set_state(AgentState.SPEAKING)
        elif name == "audio_out_end":
            self.wake.set_playing(False)
            if self._state is AgentState.SPEAKING and not self.busy:
                self._set_state(AgentState.IDLE)
        elif name in ("audio_device", "fault"):
            if name == "audio_device":
                self._device_ok[event.fields["direction"]] = bool(event.fields["ok"])
            working = self._healthy
            if not working and self._state is AgentState.IDLE:
                self._set_state(AgentState.ERROR)
            elif working and self._state is AgentState.ERROR and not self._error_timer:
                self._set_state(AgentState.IDLE)
        elif name == "failover":
            self.counts["failovers"] += 1
        elif name == "speculation" and event.fields["outcome"] == "wasted":
            self.counts["speculations_wasted"] += 1
        elif name == "audio_overrun":
            self.counts["overruns"] += 1
        elif name == "network" and not event.fields["online"]:
            self._earcon("offline")

    def _earcon(self, name: str) -> None:
        if self.earcons is None:
            return
        sound = self.earcons.get(name)
        if sound is None:
            return
        pcm, rate = sound
        try:
            stream = self.player.stream(engine="earcon", events=False)
            stream.write(pcm, rate)
            stream.end()
        except EdgeAgentError as exc:
            log.warning("earcon %s not played: %s", name, exc)

    # --- status and persistence ----------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "state": str(self._state),
            "online": self.online,
            "muted": self._muted,
            "microphone": self._device_ok["input"],
            "speaker": self._device_ok["output"],
            "wake_models": list(self.wake.model_names),
            "wake": self.wake.status(),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "volume": round(self.player.volume, 2),
            "faults": self.faults.as_dict(),
            **self.counts,
            "last_turns": [t.to_dict() for t in self.last_turns],
            **{key: part() for key, part in self.status_extras.items()},
            "memory": process_memory(),
        }

    @property
    def _mute_path(self) -> Path:
        return self.settings.state_dir / MUTE_FILE

    @property
    def _healthy(self) -> bool:
        return all(self._device_ok.values()) and not self.faults

    def _load_muted(self) -> bool:
        """Fail closed: anything but a saved ``{"muted": false}`` (or no file) mutes."""
        path = self._mute_path
        try:
            data = load_json(path)
        except StateError as exc:
            log.error("%s; starting muted", exc)
            return True
        if data is None:
            return False
        muted = data.get("muted") if isinstance(data, dict) else None
        if isinstance(muted, bool):
            return muted
        log.error("%s holds %r, not a true/false mute; starting muted (%s)",
                  path, data, move_aside(path))
        return True

    def _save_muted(self) -> None:
        self._mute_saver.save({"muted": self._muted})

    def _mute_save_failed(self, reason: str | None) -> None:
        if reason is None:
            self.faults.clear("mute")
        else:
            self.faults.set("mute", reason)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())

