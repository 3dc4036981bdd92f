"""Speculative turns: an answer started at a short pause plays only once the end
of the turn confirms it, and one discarded because the user went on leaves no
trace: no audio, no history, no transcript event, no timer, its streams closed.

Through the real TurnRunner on the fake cloud (held answers), the Speculator on
the detector's pauses, and the whole daemon on Piper speech with a pause in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.agent.speculate import Speculator
from edge_agent.config import TurnSettings
from edge_agent.events import Event, EventBus
from edge_agent.testbed.fakecloud import FakeCloud, Latency, ToolCall
from edge_agent.testbed.harness import NO_EARCONS, Harness, run, wake_then
from edge_agent.testbed.rig import Rig, loud_seconds, make_rig, question, sync
from edge_agent.tools.voices import piper, silence
from edge_agent.vad import Outcome, Pause, TurnBounds


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(transcript="what is the weather like today",
                   reply="It is sunny and warm today.") as server:
        yield server


def _held(rig: Rig) -> tuple[asyncio.Task, asyncio.Future[None]]:
    confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(rig.runner.run(
        question(), end_of_speech=time.monotonic(), turn_id=1, confirmed=confirmed))
    return task, confirmed


async def _discard(task: asyncio.Task, confirmed: asyncio.Future[None]) -> None:
    task.cancel()
    confirmed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def _no_timers(rig: Rig) -> str:
    return await rig.runner.toolbox.call("timer_status")


async def _request(cloud: FakeCloud, stage: str, count: int = 1) -> None:
    await asyncio.to_thread(cloud.wait_for_request, stage, count)


# --- the held answer (TurnRunner) -------------------------------------------------------


@pytest.mark.slow
@sync
async def test_a_held_answer_is_prepared_but_plays_only_once_confirmed(
        tmp_path: Path, cloud: FakeCloud) -> None:
    async with make_rig(tmp_path, cloud) as rig:
        task, confirmed = _held(rig)
        await _request(cloud, "tts")
        await asyncio.sleep(0.3)  # time enough to have played, were it not held
        assert rig.named("audio_out_start") == []
        assert rig.named("transcript") == []
        assert len(rig.conversation) == 0
        confirmed.set_result(None)
        result = await asyncio.wait_for(task, 30)
    assert result.spoken
    assert result.reply == "It is sunny and warm today."
    # Its audio, ready before the confirmation, was queued for the speaker after it.
    t = result.timings
    assert t["tts_first_byte"] < t["confirmed"] <= t["audio_queued"] <= t["first_audio"]
    assert [e.fields["text"] for e in rig.named("transcript")] == [
        "what is the weather like today"]
    assert len(rig.conversation) == 1
    assert loud_seconds(rig.output(), rig.rate()) > 0.3


@pytest.mark.slow
@sync
async def test_a_discarded_answer_closes_its_stream_and_leaves_no_trace(
        tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.latency = Latency(llm_tokens_per_second=5)
    cloud.reply = "First sentence here. Then " + "more words " * 20 + "."
    async with make_rig(tmp_path, cloud) as rig:
        task, confirmed = _held(rig)
        await _request(cloud, "tts")  # the first sentence is being synthesized
        await _discard(task, confirmed)
        llm = cloud.requests_for("llm")[-1]
        await asyncio.wait_for(asyncio.to_thread(llm.wait, 5), 6)
        assert llm.closed_early
        assert len(rig.conversation) == 0
        assert rig.conversation.messages("next")[-1]["content"] == "next"
    assert rig.named("audio_out_start") == []
    assert rig.named("transcript") == []
    assert rig.named("turn_done") == []
    assert loud_seconds(rig.output(), rig.rate()) == 0.0


@pytest.mark.slow
@sync
async def test_a_local_intent_acts_only_once_confirmed(
        tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.transcript = "set a timer for ten minutes"
    async with make_rig(tmp_path, cloud) as rig:
        task, confirmed = _held(rig)
        await _request(cloud, "stt")
        await asyncio.sleep(0.3)  # the intent matched and waits
        assert await _no_timers(rig) == "There are no timers running."
        await _discard(task, confirmed)
        assert await _no_timers(rig) == "There are no timers running."

        task, confirmed = _held(rig)
        await _request(cloud, "stt", 2)
        await asyncio.sleep(0.3)
        assert await _no_timers(rig) == "There are no timers running."
        confirmed.set_result(None)
        result = await asyncio.wait_for(task, 30)
        status = await _no_timers(rig)
    assert result.reply == "Timer set for 10 minutes."
    assert status.startswith("10 minutes left") or status.startswith("9 minutes")
    assert cloud.requests_for("llm") == []


@pytest.mark.slow
@sync
async def test_a_tool_call_that_acts_waits_but_one_that_tells_does_not(
        tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.queue_replies([ToolCall("get_time")], [ToolCall("set_timer", {"seconds": 60})])
    async with make_rig(tmp_path, cloud, prefer_local=False) as rig:
        task, confirmed = _held(rig)
        # get_time only tells: the second request follows at once; set_timer waits.
        await _request(cloud, "llm", 2)
        await asyncio.sleep(0.3)
        assert len(cloud.requests_for("llm")) == 2
        await _discard(task, confirmed)
        assert await _no_timers(rig) == "There are no timers running."
    assert len(cloud.requests_for("llm")) == 2  # set_timer's result never went back


# --- the Speculator on pauses -------------------------------------------------------------


def _pause(voiced_end: int, seconds: float) -> Pause:
    return Pause(speech_start_index=1000, voiced_end_index=voiced_end,
                 end_index=voiced_end + 4000, seconds=seconds)


def _bounds(voiced_end: int) -> TurnBounds:
    return TurnBounds(Outcome.SPEECH_END, 0, voiced_end + 4000, 1000,
                      voiced_end_index=voiced_end)


@sync
async def test_speculator_starts_once_per_pause_and_discards_when_speech_resumes() -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    begun: list[tuple[Pause, asyncio.Future[None]]] = []

    def begin(pause: Pause, confirmed: asyncio.Future[None]) -> asyncio.Task[Any]:
        begun.append((pause, confirmed))

        async def held() -> None:
            await asyncio.shield(confirmed)

        return asyncio.create_task(held())

    speculator = Speculator(TurnSettings(speculative_pause=0.25), bus, begin)
    speculator.observe(_pause(8000, 0.2))
    assert begun == []
    speculator.observe(_pause(8000, 0.25))
    speculator.observe(_pause(8000, 0.4))  # the same pause going on: still one
    assert len(begun) == 1
    first = begun[0][1]
    speculator.observe(None)  # a voiced frame: the user goes on
    assert first.cancelled()
    speculator.observe(_pause(16000, 0.3))
    assert len(begun) == 2
    # The turn ends on a different pause (a word came after it): not this one.
    assert speculator.take(_bounds(20000)) is None
    speculator.observe(_pause(24000, 0.3))
    speculation = speculator.take(_bounds(24000))
    assert speculation is not None
    await asyncio.wait_for(speculation.confirm(), 5)
    await speculator.close()
    outcomes = [e.fields["outcome"] for e in events if e.name == "speculation"]
    assert outcomes == ["wasted", "wasted", "used"]


@sync
async def test_speculator_close_discards_what_the_turn_never_took() -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    tasks: list[asyncio.Task[Any]] = []

    def begin(pause: Pause, confirmed: asyncio.Future[None]) -> asyncio.Task[Any]:
        tasks.append(asyncio.create_task(asyncio.sleep(60)))
        return tasks[-1]

    speculator = Speculator(TurnSettings(), bus, begin)
    speculator.observe(_pause(8000, 0.3))
    await speculator.close()
    assert tasks[0].cancelled()
    assert [e.fields["outcome"] for e in events] == ["wasted"]


# --- the daemon: natural pauses ----------------------------------------------------------


def _timer_transcript(audio: np.ndarray) -> str:
    # Whatever was heard before the pause is a question cut short.
    return "set a timer for ten minutes" if len(audio) > 2.1 * 16000 else "set a timer for"


@pytest.mark.slow
def test_a_pause_mid_request_wastes_a_guess_but_acts_and_remembers_once(
        tmp_path: Path) -> None:
    audio = np.concatenate([silence(1.0), piper("hey jarvis"), silence(0.15),
                            piper("Set a timer for"), silence(0.3), piper("ten minutes."),
                            silence(3.0)])

    async def scenario() -> None:
        # The LLM, were it asked, would set a timer of its own: it must not.
        with FakeCloud(transcript=_timer_transcript,
                       reply=[ToolCall("set_timer", {"seconds": 60})]) as fake:
            async with Harness(tmp_path, fake, audio, extra=NO_EARCONS, gpio=False) as h:
                done = await h.wait_event("turn_done", within=40)
                agent = h.daemon.agent
                timers = h.daemon.timers.remaining()
                status = agent.status()
        assert [t.duration for t in timers] == [600.0]
        outcomes = [e.fields["outcome"] for e in h.named("speculation")]
        assert outcomes.count("wasted") >= 1 and outcomes[-1] == "used"
        assert status["speculations_wasted"] == outcomes.count("wasted")
        assert [e.fields["text"] for e in h.named("transcript")] == [
            "set a timer for ten minutes"]
        assert done.fields["reply_engine"] == "local"
        assert len(h.daemon.conversation) == 1

    run(scenario())


@pytest.mark.slow
def test_speculation_off_sends_one_transcription_per_turn(tmp_path: Path) -> None:
    audio = wake_then("what is the weather like today")

    async def scenario() -> None:
        with FakeCloud(transcript="what is the weather like today") as fake:
            extra = NO_EARCONS + "[turn]\nspeculative = false\n"
            async with Harness(tmp_path, fake, audio, extra=extra, gpio=False) as h:
                await h.wait_event("turn_done", within=40)
            assert len(fake.requests_for("stt")) == 1
        assert h.named("speculation") == []

    run(scenario())
