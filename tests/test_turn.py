"""The turn pipeline end to end through real components: the fake cloud over real
HTTP on 127.0.0.1, the real cloud clients, Piper (joe voice), Vosk (Korean model),
local intents on real device tools, and a real Player writing a .wav output that
the tests read back."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.agent.turn import (
    NOT_CAUGHT,
    is_meaningful,
    latencies_ms,
)
from edge_agent.intents import LocalIntents, Timers, device_tools
from edge_agent.testbed.fakecloud import TTS_RATE, FakeCloud, Latency, ToolCall, tone
from edge_agent.testbed.rig import (
    LOUD,
    TURN_TIMEOUT,
    Speaker,
    loud_seconds,
    make_rig,
    sync,
)


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(transcript="what is the weather like today",
                   reply="It is sunny and warm today.") as server:
        yield server


# --- reading the output back ------------------------------------------------------------


def tone_sequence(audio: np.ndarray, rate: int, window: float = 0.04) -> list[int]:
    """The dominant frequency (Hz, to 100) of the sound, window by window, in order of
    appearance; a frequency held for fewer than three windows (a seam) is ignored."""
    n = int(rate * window)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    held: list[list[int]] = []  # [frequency, windows]
    for frame in audio[: len(audio) // n * n].astype(np.float64).reshape(-1, n):
        if np.sqrt((frame**2).mean()) <= LOUD:
            continue
        freq = int(round(freqs[int(np.abs(np.fft.rfft(frame)).argmax())] / 100) * 100)
        if held and held[-1][0] == freq:
            held[-1][1] += 1
        else:
            held.append([freq, 1])
    found: list[int] = []
    for freq, count in held:
        if count >= 3 and (not found or found[-1] != freq):
            found.append(freq)
    return found


SENTENCE_SECONDS = 1.0


def sentence_tones(text: str) -> np.ndarray:
    """The fake cloud's "voice": one frequency per sentence, given by its number."""
    number = int(re.search(r"(\d+)", text).group(1))
    return tone(SENTENCE_SECONDS, rate=TTS_RATE, freq=300.0 + 200.0 * number)


# --- tests -------------------------------------------------------------------------------


def test_noise_only_transcripts_are_not_questions() -> None:
    for noise in ("", "  ", "[BLANK_AUDIO]", "(music)", "you", "Um...", "*cough*"):
        assert not is_meaningful(noise), noise
    for speech in ("what time is it", "Hi.", "ok", "몇 시야"):
        assert is_meaningful(speech), speech


@pytest.mark.slow
@sync
async def test_sentences_play_in_order_while_the_next_is_synthesized(
        tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.speech = sentence_tones
    cloud.reply = "Sentence 1 is here. Sentence 2 follows it. Sentence 3 ends it."
    cloud.latency = Latency(tts_first_byte=0.1, llm_tokens_per_second=40)
    async with make_rig(tmp_path, cloud) as rig:
        result = await rig.turn()
        audio, rate = rig.output(), rig.rate()
    assert result.reply_engine == "cloud"
    assert result.reply == cloud.reply
    requests = cloud.requests_for("tts")
    assert sorted(r.json["input"] for r in requests) == [
        "Sentence 1 is here.", "Sentence 2 follows it.", "Sentence 3 ends it."]
    assert tone_sequence(audio, rate) == [500, 700, 900]
    # Sentence 2 was synthesized while sentence 1 played, not after it.
    second = next(r for r in requests if r.json["input"].startswith("Sentence 2"))
    assert second.received_at < result.timings["first_audio"] + SENTENCE_SECONDS
    assert [e.fields["engine"] for e in rig.named("audio_out_start")] == ["cloud"]
    assert len(rig.named("audio_out_end")) == 1
    timings = result.timings
    assert (timings["end_of_speech"] <= timings["stt_done"] <= timings["llm_first_token"]
            <= timings["first_sentence"] <= timings["tts_first_byte"]
            <= timings["first_audio"] <= timings["done"])
    (done,) = rig.named("turn_done")
    assert done.fields["timings"] == timings
    assert rig.named("reply_text")[0].fields == {
        "text": cloud.reply, "engine": "cloud", "turn_id": 1}
    assert rig.named("transcript")[0].fields["engine"] == "cloud"


@pytest.mark.slow
@sync
async def test_audio_starts_before_the_llm_has_finished(tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.reply = ("The first sentence is short. " + "Then the model keeps writing " * 6 + ".")
    cloud.latency = Latency(llm_tokens_per_second=8)
    async with make_rig(tmp_path, cloud) as rig:
        llm_done_at_start: list[bool] = []
        rig.runner.bus.subscribe(
            lambda e: e.name == "audio_out_start" and llm_done_at_start.append(
                cloud.requests_for("llm")[-1].done.is_set()))
        result = await rig.turn()
    assert llm_done_at_start == [False]
    assert result.spoken
    assert loud_seconds(rig.output(), rig.rate()) > 1.0


@pytest.mark.slow
@sync
async def test_history_is_sent_on_the_second_turn(tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.queue_transcripts("who wrote hamlet", "when was he born")
    cloud.queue_replies("Shakespeare wrote it.", "In 1564.")
    async with make_rig(tmp_path, cloud) as rig:
        await rig.turn(turn_id=1)
        await rig.turn(turn_id=2)
    first, second = cloud.requests_for("llm")
    said = [(m["role"], m["content"]) for m in second.messages if m["role"] != "system"]
    assert said == [("user", "who wrote hamlet"), ("assistant", "Shakespeare wrote it."),
                    ("user", "when was he born")]
    assert [m["role"] for m in first.messages if m["role"] != "system"] == ["user"]


@pytest.mark.slow
@sync
async def test_a_tool_call_round_trips(tmp_path: Path, cloud: FakeCloud) -> None:
    def answer(body: dict) -> Any:
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        return f"Sure. {results[0]}" if results else [ToolCall("get_time")]

    cloud.reply = answer
    async with make_rig(tmp_path, cloud, prefer_local=False) as rig:
        result = await rig.turn()
    first, second = cloud.requests_for("llm")
    assert any(t["function"]["name"] == "get_time" for t in first.json["tools"])
    tool_results = [m["content"] for m in second.messages if m["role"] == "tool"]
    assert tool_results == [result.reply.removeprefix("Sure. ")]
    assert re.fullmatch(r"Sure\. It's \d+:\d\d [AP]M\.", result.reply)
    assert result.reply_engine == "cloud"
    assert loud_seconds(rig.output(), rig.rate()) > 0.3


@pytest.mark.slow
@sync
@pytest.mark.parametrize("heard", ["what time is it", "Jarvis, what time is it?"])
async def test_prefer_local_answers_the_time_without_the_llm(
        tmp_path: Path, cloud: FakeCloud, heard: str) -> None:
    # The recognizer may hear the tail of the wake phrase: it is not part of the question.
    cloud.transcript = heard
    async with make_rig(tmp_path, cloud) as rig:
        result = await rig.turn()
    assert result.transcript.lower().rstrip("?") == "what time is it"
    assert cloud.requests_for("llm") == []
    assert result.reply_engine == "local"
    assert re.search(r"\d+:\d\d [AP]M", result.reply)
    assert loud_seconds(rig.output(), rig.rate()) > 0.3


@sync
async def test_a_missing_key_is_named_and_nothing_is_sent(tmp_path: Path, cloud: FakeCloud) -> None:
    async with make_rig(tmp_path, cloud, key=None, vosk=False) as rig:
        first = await rig.turn()
        second = await rig.turn(turn_id=2)
        state = rig.connectivity.status()
    assert cloud.requests == []
    for result in (first, second):
        assert result.reply == "I can't reach the cloud: the API key is missing."
        assert result.spoken
    assert (state["state"], state["cause"]) == ("offline", "no_key")


@sync
async def test_a_refused_key_is_named(tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.fail("stt", "status", status=401)
    async with make_rig(tmp_path, cloud, vosk=False) as rig:
        result = await rig.turn()
    assert result.reply == "I can't reach the cloud: the API key was refused."
    assert [e.fields["cause"] for e in rig.named("network")] == ["key_refused"]
    assert cloud.requests_for("llm") == cloud.requests_for("tts") == []


@sync
async def test_each_turn_leaves_one_transcript_line_in_the_log(
        tmp_path: Path, cloud: FakeCloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    cloud.transcript = "what time is it"
    async with make_rig(tmp_path, cloud, vosk=False) as rig:
        result = await rig.turn(turn_id=7)
    lines = [r.getMessage() for r in caplog.records
             if r.name == "edge_agent.agent.turn" and r.levelno == logging.INFO]
    assert len(lines) == 1
    assert "what time is it" in lines[0] and result.reply in lines[0]
    assert "turn 7" in lines[0] and "cloud" in lines[0] and "local" in lines[0]
    assert f"{latencies_ms(result.timings)['first_audio']:.0f} ms" in lines[0]


def test_the_offline_notice_can_name_the_key() -> None:
    intents = LocalIntents(device_tools(Speaker(), Timers(Path("/nonexistent"), lambda t: None)))
    text = intents.offline_help(why="I can't reach the cloud: the API key is missing")
    assert text.startswith("I can't reach the cloud: the API key is missing, so I can't")
    assert "tell the time" in text


@pytest.mark.slow
@sync
async def test_noise_ends_politely_without_the_llm(tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.transcript = "[BLANK_AUDIO]"
    async with make_rig(tmp_path, cloud) as rig:
        result = await rig.turn()
    assert cloud.requests_for("llm") == []
    assert result.reply == NOT_CAUGHT
    assert result.spoken
    assert rig.conversation.messages("next")[-1]["content"] == "next"
    assert len(rig.conversation.messages("next")) == 2  # system + the new question only


@pytest.mark.slow
@sync
async def test_cancelling_mid_answer_closes_the_cloud_streams(
        tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.reply = "First sentence here. Then " + "more and more words " * 20 + "."
    cloud.latency = Latency(llm_tokens_per_second=10, tts_rtf=0.5)
    async with make_rig(tmp_path, cloud) as rig:
        started = asyncio.Event()
        rig.runner.bus.subscribe(lambda e: e.name == "audio_out_start" and started.set())
        task = asyncio.create_task(rig.turn())
        await asyncio.wait_for(started.wait(), TURN_TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        rig.player.stop()
        llm = cloud.requests_for("llm")[-1]
        await asyncio.wait_for(asyncio.to_thread(llm.wait, 5), 6)
    assert llm.closed_early
    assert rig.named("turn_done") == []
    assert len(rig.conversation) == 0  # nothing had finished playing


@pytest.mark.slow
@sync
async def test_an_interrupted_answer_is_remembered_as_far_as_it_was_heard(
        tmp_path: Path, cloud: FakeCloud) -> None:
    # Sentence 1 plays in 0.6 s; sentence 2 needs 4 s more of tokens. Barge in
    # between the two: the model must only believe the user heard sentence 1.
    cloud.reply = "First sentence here. Then " + "more and more words " * 5 + "."
    cloud.latency = Latency(llm_tokens_per_second=5)
    async with make_rig(tmp_path, cloud) as rig:
        started = asyncio.Event()
        rig.runner.bus.subscribe(lambda e: e.name == "audio_out_start" and started.set())
        task = asyncio.create_task(rig.turn())
        await asyncio.wait_for(started.wait(), TURN_TIMEOUT)
        await asyncio.sleep(1.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        rig.player.stop()
    assert rig.conversation.messages("go on")[-2:] == [
        {"role": "assistant", "content": "First sentence here."},
        {"role": "user", "content": "go on"}]


@pytest.mark.slow
@sync
async def test_speak_says_a_notice(tmp_path: Path, cloud: FakeCloud) -> None:
    async with make_rig(tmp_path, cloud) as rig:
        played = await asyncio.wait_for(rig.runner.speak("Your pasta timer is done."), 20)
    assert played
    assert [r.json["input"] for r in cloud.requests_for("tts")] == ["Your pasta timer is done."]
    assert loud_seconds(rig.output(), rig.rate()) > 0.3


@pytest.mark.slow
@sync
async def test_offline_from_the_start_answers_on_the_device(tmp_path: Path) -> None:
    cloud = FakeCloud()  # never started: every connection is refused
    async with make_rig(tmp_path, cloud, cloud_enabled=False) as rig:
        result = await rig.turn()
    assert result.transcript_engine == "vosk"
    assert result.reply_engine in ("local", "offline")
    assert [e.fields["engine"] for e in rig.named("audio_out_start")] == ["piper"]
    assert rig.named("failover") == []
    assert loud_seconds(rig.output(), rig.rate()) > 0.3
