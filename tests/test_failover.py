"""The failover matrix: every fault of the fake cloud at every stage ends in audible
speech in the output WAV, with one ``failover`` event naming the switch, and no
crash. Real engines throughout (see edge_agent/testbed/rig.py for the rig)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent.failover import timed
from edge_agent.agent.turn import CLOUD_TROUBLE, LOST_CONNECTION, ONE_MOMENT, STT_HEDGE_SECONDS
from edge_agent.errors import LlmCloudError, SttCloudError
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.fault_cases import CASES, REPLY
from edge_agent.testbed.rig import loud_seconds, make_rig, sync
from edge_agent.text import SentenceChunker

FIRST_SENTENCE = "It is sunny and warm today."


def _id(case: tuple[str, str, dict[str, Any]]) -> str:
    stage, kind, params = case
    return "-".join([stage, kind, *(f"{k}{v}" for k, v in params.items())])


@pytest.fixture
def cloud() -> FakeCloud:
    with FakeCloud(transcript="what is the weather like today", reply=REPLY) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
@sync
async def test_every_fault_ends_in_speech(tmp_path: Path, cloud: FakeCloud,
                                          monkeypatch: pytest.MonkeyPatch,
                                          case: tuple[str, str, dict[str, Any]]) -> None:
    stage, kind, params = case
    if stage != "stt":
        # A healthy STT that a loaded 2-core runner delays past the 2 s hedge would
        # fail over to Vosk before the fault under test is reached.
        monkeypatch.setattr("edge_agent.agent.turn.STT_HEDGE_SECONDS", 30.0)
    if kind != "refused":
        cloud.fail(stage, kind, **params)
    async with make_rig(tmp_path, cloud, refused=stage if kind == "refused" else "") as rig:
        result = await rig.turn()
        audio, rate = rig.output(), rig.rate()

    (failover,) = rig.named("failover")
    to = {"stt": "vosk", "llm": "offline", "tts": "piper"}[stage]
    assert (failover.fields["stage"], failover.fields["from"], failover.fields["to"]) == (
        stage, "cloud", to)
    assert failover.fields["reason"]
    assert result.spoken
    assert loud_seconds(audio, rate) > 0.5
    assert len(rig.named("audio_out_start")) == 1  # one stream for the whole answer
    (done,) = rig.named("turn_done")
    assert done.fields["spoken"] is True

    if stage == "stt":
        assert result.transcript_engine == "vosk"
        # Vosk decodes only now (fallback mode): the wait is announced, not silent.
        assert result.reply.startswith(ONE_MOMENT)
    elif stage == "llm" and params.get("after"):
        # Broken mid-answer: what was said stands, a notice ends it, and the
        # conversation remembers only the sentence the user heard.
        assert result.reply == f"{FIRST_SENTENCE} {LOST_CONNECTION}"
        assert result.reply_engine == "cloud"
        history = rig.conversation.messages("and tomorrow?")
        assert history[-2] == {"role": "assistant", "content": FIRST_SENTENCE}
    elif stage == "llm":
        assert result.reply_engine == "offline"
        if kind in ("rate_limit", "malformed_sse"):  # the cloud answers, badly
            assert result.reply == CLOUD_TROUBLE
        else:  # out of reach: say so, and what still works
            assert result.reply == rig.runner.intents.offline_help()
        assert len(rig.conversation) == 0
    else:
        assert result.reply == REPLY
        assert rig.named("audio_out_end")[-1].fields["engine"] == "piper"
        if kind != "refused":
            # A look-ahead request cut off by the failover may arrive without its body.
            asked = [r.json["input"] for r in cloud.requests_for("tts") if r.json]
            assert FIRST_SENTENCE in asked


@pytest.mark.slow
@sync
async def test_an_open_breaker_skips_the_cloud(tmp_path: Path, cloud: FakeCloud) -> None:
    async with make_rig(tmp_path, cloud) as rig:
        rig.connectivity.record_failure("stt", SttCloudError("refused", offline=True))
        result = await rig.turn()
    assert cloud.requests == []  # no request, so no timeout paid
    assert rig.named("failover") == []
    assert result.transcript_engine == "vosk"
    assert [e.fields["engine"] for e in rig.named("audio_out_start")] == ["piper"]
    assert result.spoken


@pytest.mark.slow
@sync
async def test_stt_failure_uses_the_parallel_vosk_result(
        tmp_path: Path, cloud: FakeCloud) -> None:
    async def live_vosk() -> str:
        return "what time is it"

    cloud.fail("stt", "status", status=500)
    async with make_rig(tmp_path, cloud) as rig:
        result = await rig.turn(vosk_result=live_vosk())
    assert result.transcript == "what time is it"
    assert result.transcript_engine == "vosk"
    assert result.reply_engine == "local"
    assert "M." in result.reply  # "It's 3:05 PM."
    assert cloud.requests_for("llm") == []


@pytest.mark.slow
@sync
async def test_llm_failure_falls_back_to_a_local_intent(tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.transcript = "set a timer for five minutes"
    cloud.fail("llm", "rate_limit", retry_after=1)
    async with make_rig(tmp_path, cloud, prefer_local=False) as rig:
        result = await rig.turn()
    (failover,) = rig.named("failover")
    assert failover.fields["to"] == "local"
    assert result.reply_engine == "local"
    assert "5 minute" in result.reply or "five minute" in result.reply
    assert result.spoken
    assert len(cloud.requests_for("llm")) == 1


@pytest.mark.slow
@sync
async def test_speak_fails_over_to_piper(tmp_path: Path, cloud: FakeCloud) -> None:
    cloud.fail("tts", "status", status=500)
    async with make_rig(tmp_path, cloud) as rig:
        played = await rig.runner.speak("Your tea timer is done.")
    assert played
    (failover,) = rig.named("failover")
    assert (failover.fields["stage"], failover.fields["to"]) == ("tts", "piper")
    assert loud_seconds(rig.output(), rig.rate()) > 0.5


@sync
async def test_a_stalled_stream_becomes_a_typed_error_and_is_closed() -> None:
    closed = asyncio.Event()

    async def stream(stall_after: int) -> AsyncIterator[str]:
        try:
            for n in range(10):
                if n == stall_after:
                    await asyncio.sleep(60)
                yield f"t{n}"
        finally:
            closed.set()

    got: list[str] = []
    with pytest.raises(LlmCloudError, match="stalled") as broken:
        async for item in timed(stream(3), first=5.0, gap=0.05, error=LlmCloudError):
            got.append(item)
    assert got == ["t0", "t1", "t2"]
    assert closed.is_set()
    assert (broken.value.offline, broken.value.partial) == (False, True)

    closed.clear()
    with pytest.raises(LlmCloudError, match=r"nothing for 0\.05 s") as unreachable:
        async for _ in timed(stream(0), first=0.05, gap=5.0, error=LlmCloudError):
            pass
    assert closed.is_set()
    assert (unreachable.value.offline, unreachable.value.partial) == (True, False)
    # A slow consumer is no stall: only the wait on the stream is timed.
    slow = []
    async for item in timed(stream(99), first=0.05, gap=0.05, error=LlmCloudError):
        slow.append(item)
        await asyncio.sleep(0.1)
    assert len(slow) == 10


@pytest.mark.slow
@sync
async def test_notices_are_synthesized_once(tmp_path: Path, cloud: FakeCloud) -> None:
    async def say(text: str) -> bytes:
        return b"".join([pcm async for pcm in rig.runner.piper.synthesize(text)])

    async with make_rig(tmp_path, cloud) as rig:
        await rig.runner.prewarm()
        chunker = SentenceChunker()
        help_first = [*chunker.feed(rig.runner.intents.offline_help()), *chunker.flush()][0]
        # Piper's output varies from one synthesis to the next, so equal bytes
        # mean the notice was replayed from memory, not synthesized again.
        assert await say(ONE_MOMENT) == await say(ONE_MOMENT)
        assert await say(help_first) == await say(help_first)
        assert await say("Hello there.") != await say("Hello there.")


SLOW_TIMEOUTS = {"connect": 3.0, "stt": 8.0, "llm_first_token": 3.0, "llm_idle": 3.0,
                 "tts_first_byte": 3.0}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["llm", "tts"])
@sync
async def test_a_long_stall_is_announced_before_its_timeout(
        tmp_path: Path, cloud: FakeCloud, stage: str) -> None:
    # With timeouts of seconds, a stalled stage would leave the speaker silent until
    # the timeout; "One moment." (Piper, remembered) fills the wait instead.
    cloud.fail(stage, "stall_first", times=None)
    async with make_rig(tmp_path, cloud, timeouts=SLOW_TIMEOUTS) as rig:
        await rig.runner.prewarm()
        result = await rig.turn()
    assert result.reply.startswith(ONE_MOMENT)
    starts = rig.named("audio_out_start")
    assert [e.fields["engine"] for e in starts] == ["piper"]
    (failover,) = rig.named("failover")
    assert failover.t > starts[0].t  # the notice played before the timeout fired
    assert result.spoken


@pytest.mark.slow
@sync
async def test_a_healthy_turn_has_no_wait_notice(tmp_path: Path, cloud: FakeCloud) -> None:
    async with make_rig(tmp_path, cloud, timeouts=SLOW_TIMEOUTS) as rig:
        result = await rig.turn()
    assert result.reply == REPLY
    assert ONE_MOMENT not in result.reply


@pytest.mark.slow
@sync
async def test_a_stalled_cloud_transcript_is_hedged_with_vosk(
        tmp_path: Path, cloud: FakeCloud) -> None:
    # With the shipped 8 s STT timeout, a stalled upload would hold the answer for
    # 8 s; past the hedge point Vosk transcribes the same audio and wins.
    # The timeout here is longer still: the test's Korean Vosk model takes 5x real
    # time on a loaded 2-core runner, and the hedge must win however long Vosk takes.
    cloud.fail("stt", "stall_first", times=None)
    async with make_rig(tmp_path, cloud, timeouts={**SLOW_TIMEOUTS, "stt": 60.0}) as rig:
        await rig.runner.prewarm()
        result = await rig.turn()
    assert result.transcript_engine == "vosk"
    (failover,) = rig.named("failover")
    assert failover.fields["stage"] == "stt"
    assert "Vosk had one" in failover.fields["reason"]
    assert cloud.requests_for("stt")[0].closed_early
    assert result.spoken


@pytest.mark.slow
@sync
async def test_a_slow_cloud_transcript_still_wins_over_the_hedge(
        tmp_path: Path, cloud: FakeCloud) -> None:
    # Slower than the hedge point but within the grace after Vosk: the cloud's
    # transcript is used and no failover happens.
    cloud.latency.stt = STT_HEDGE_SECONDS + 0.3
    async with make_rig(tmp_path, cloud, timeouts=SLOW_TIMEOUTS) as rig:
        result = await rig.turn()
    assert result.transcript_engine == "cloud"
    assert result.transcript == "what is the weather like today"
    assert rig.named("failover") == []
