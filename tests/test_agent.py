"""The Agent's decisions, through the real daemon: barge-in by the wake word
while it talks, a held barge-in turning into push-to-talk, timers announced
offline with Piper, the Device protocol the tools use, and status() over the
control socket."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.intents import Device
from edge_agent.logsetup import setup_logging
from edge_agent.testbed.fakecloud import FakeCloud, Latency
from edge_agent.testbed.harness import NO_EARCONS, Harness, run, wake_then
from edge_agent.testbed.wait import poll_until
from edge_agent.tools.voices import RATE, piper, silence
from tests.test_e2e import STORY, loud_seconds

pytestmark = pytest.mark.slow


def test_wake_word_while_speaking_barges_in(tmp_path: Path) -> None:
    # The second "hey jarvis" comes while the long answer to the first is playing.
    audio = np.concatenate([wake_then("tell me a long story", after=3.0), piper("hey jarvis"),
                            silence(0.15), piper("what about tomorrow"), silence(3.0)])

    async def scenario() -> None:
        latency = Latency(tts_rtf=1.0)
        with FakeCloud(reply=STORY, latency=latency) as fake:
            fake.queue_transcripts("tell me a long story", "what about tomorrow")
            fake.queue_replies(STORY, "Okay.")
            async with Harness(tmp_path, fake, audio, extra=NO_EARCONS, gpio=False) as h:
                barge_in = await h.wait_event("barge_in", within=40)
                assert barge_in.fields["source"] == "wake"
                end = await h.wait_event("audio_out_end")
                assert end.fields["interrupted"] is True
                await h.wait_event("turn_done", within=40)
                assert len(h.named("wake")) == 2
                assert fake.requests_for("llm")[-1].messages[-1]["content"] == "what about tomorrow"
        states = h.states()
        assert states[:5] == ["listening", "thinking", "speaking", "listening", "thinking"]

    run(scenario())


def test_held_barge_in_becomes_push_to_talk(tmp_path: Path) -> None:
    first = wake_then("tell me a long story", after=2.7)
    speech = piper("what about tomorrow")
    audio = np.concatenate([first, speech, silence(3.0)])
    speech_end = (len(first) + len(speech)) / RATE

    async def scenario() -> None:
        with FakeCloud(reply=STORY, latency=Latency(tts_rtf=1.0)) as fake:
            fake.queue_transcripts("tell me a long story", "what about tomorrow")
            h = Harness(tmp_path, fake, audio, extra=NO_EARCONS)
            h.config.write_text(h.config.read_text().replace(
                "button = 17\n", "button = 17\nmute_hold_seconds = 20.0\n"))
            async with h:
                await h.wait_event("audio_out_start")
                h.button(True)  # press and hold while it talks
                await h.wait_event("barge_in")
                await h.at_input_second(speech_end + 0.5)
                h.button(False)
                utterance = await h.wait_event("utterance", count=2)
                await h.wait_event("turn_done", within=40)
        # A pause did not end it: only the release did, after the whole question.
        assert utterance.fields["outcome"] == "released"
        assert utterance.fields["end_index"] >= speech_end * RATE
        assert len(fake.requests_for("stt")) == 2

    run(scenario())


def test_timer_rings_offline_through_piper(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeCloud().start()
        fake.stop()  # no cloud at all
        async with Harness(tmp_path, fake, silence(15.0), gpio=False) as h:
            await h.wait_event("network")
            h.daemon.timers.set(0.5, "tea")
            spoken = await h.wait_event("audio_out_start", within=30)
            await h.wait_event("audio_out_end", within=30)
            assert spoken.fields["engine"] == "piper"
            await h.wait_event("state", state="idle")
        assert h.states() == ["speaking", "idle"]
        assert loud_seconds(h.output()) > 0.3

    run(scenario())


def test_device_protocol_and_status_over_the_control_socket(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = wake_then("what is the weather")

    async def scenario() -> None:
        with FakeCloud(transcript="what is the weather", reply="It is sunny.") as fake:
            async with Harness(tmp_path, fake, audio, gpio=False) as h:
                agent = h.daemon.agent
                device: Device = agent
                device.volume = 1.7
                assert h.daemon.player.volume == 1.0
                device.volume = 0.6
                await h.wait_event("turn_done", within=40)
                assert device.last_answer == "It is sunny."
                assert device.online is True
                await h.wait_event("state", state="idle")
                socket = str(tmp_path / "control.sock")
                code = await asyncio.to_thread(main, ["status", "--json", "--socket", socket])
                assert code == 0
                code = await asyncio.to_thread(main, ["listen", "--socket", socket])
                assert code == 0
                await h.wait_event("state", state="listening", count=2)
                code = await asyncio.to_thread(main, ["mute", "--socket", socket])
                assert code == 0
                assert agent.state == "muted"
        out = capsys.readouterr().out
        status = out[out.index("{"):out.rindex("}") + 1]
        for key in ('"state": "idle"', '"online": true', '"muted": false',
                    '"wake_models": [', '"transcript": "what is the weather"',
                    '"reply": "It is sunny."', '"latency_ms": {', '"overruns": '):
            assert key in status

    run(scenario())


def test_mute_by_voice_still_says_how_to_unmute(tmp_path: Path) -> None:
    audio = wake_then("stop listening")

    async def scenario() -> None:
        with FakeCloud(transcript="stop listening") as fake:
            async with Harness(tmp_path, fake, audio, gpio=False) as h:
                mute = await h.wait_event("mute")
                done = await h.wait_event("turn_done", within=40)
                spoken = h.named("audio_out_start")
                assert spoken and spoken[-1].t > mute.t
                assert "Microphone off" in h.named("reply_text")[-1].fields["text"]
                assert done.t > mute.t
                await asyncio.sleep(0.2)
                assert h.daemon.agent.state == "muted"
                assert h.daemon.ring.muted
        assert h.states()[-1] == "muted"
        assert fake.requests_for("llm") == []  # a local intent: nothing left the device

    run(scenario())


def test_button_mashing_through_every_state_never_sticks(tmp_path: Path) -> None:
    audio = wake_then("tell me a long story", after=12.0)
    rng = np.random.default_rng(7)

    async def scenario() -> None:
        with FakeCloud(reply=STORY, latency=Latency(tts_rtf=1.0)) as fake:
            h = Harness(tmp_path, fake, audio, extra="[turn]\nno_speech_timeout = 1.0\n")
            h.config.write_text(h.config.read_text().replace(
                "[audio]\n", "[audio]\npreroll_seconds = 0.3\n"))
            async with h:
                await h.wait_event("audio_out_start")
                for _ in range(40):  # taps and short holds, some past hold_seconds
                    await h.tap(float(rng.uniform(0.01, 0.8)))
                    await asyncio.sleep(float(rng.uniform(0.0, 0.2)))
                agent = h.daemon.agent
                await poll_until(lambda: agent.state == "idle" and not agent.busy, 30)
                await asyncio.sleep(1.0)  # nothing left running that could change it
                assert agent.state == "idle"
                assert not agent.busy
                assert h.named("error") == []
                assert len(h.named("barge_in")) == 1  # only the answer was interrupted

    run(scenario())


def test_journal_records_of_a_turn_carry_turn_id_and_state(tmp_path: Path) -> None:
    audio = wake_then("what is the weather")
    entries: list[dict[str, str]] = []
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    async def scenario() -> None:
        with FakeCloud(transcript="what is the weather", reply="Sunny.") as fake:
            async with Harness(tmp_path, fake, audio, gpio=False) as h:
                await h.wait_event("turn_done", within=40)

    setup_logging("info", journal=True,
                  journal_sender=lambda text, **fields: entries.append(
                      {**{k: str(v) for k, v in fields.items()}, "MESSAGE": text}))
    try:
        run(scenario())
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    in_turn = [e for e in entries if e.get("TURN_ID") == "1"]
    assert in_turn, "no journal record carried TURN_ID=1"
    # The transcript line: what was heard and what was said, in the turn's records.
    assert any("what is the weather" in e["MESSAGE"] and "Sunny." in e["MESSAGE"]
               for e in in_turn)
    # Every record carries the agent's state at the time (journalctl STATE=...).
    assert {e.get("STATE") for e in entries} >= {"idle", "listening", "speaking"}


def test_a_failed_turn_shows_the_error_state_then_idles(tmp_path: Path) -> None:
    audio = wake_then("what is the weather")

    async def scenario() -> None:
        with FakeCloud(transcript="what is the weather",
                       latency=Latency(stt=0.5)) as fake:
            async with Harness(tmp_path, fake, audio, gpio=False) as h:
                await h.wait_event("utterance", within=30)
                h.daemon.player.close()  # the speaker vanished while it was thinking
                error = await h.wait_event("error", within=30)
                assert error.fields["where"] == "turn"
                await h.wait_event("state", state="idle", within=10)
                status = h.daemon.agent.status()
        assert h.states()[-3:] == ["thinking", "error", "idle"]
        assert status["last_turns"][0]["error"]

    run(scenario())


def test_a_near_miss_is_logged_and_shown_in_status(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A take that comes close to a raised threshold wakes nothing, but the
    event log and `status` show how close it came, per engine."""
    audio = wake_then("what is the weather")
    extra = '[wake]\nengines = ["microwakeword"]\nthreshold = 0.99\n'

    async def scenario() -> None:
        with FakeCloud(transcript="what is the weather", reply="It is sunny.") as fake:
            async with Harness(tmp_path, fake, audio, extra=extra, gpio=False) as h:
                miss = await h.wait_event("wake_near_miss", within=40)
                assert miss.fields["engine"] == "microwakeword"
                assert 0.89 <= miss.fields["score"] < 0.99
                code = await asyncio.to_thread(
                    main, ["status", "--socket", str(tmp_path / "control.sock")])
                assert code == 0
                assert h.named("wake") == []
        out = capsys.readouterr().out
        assert "wake near misses: 1" in out
        assert "microwakeword" in out

    run(scenario())


def test_closing_the_agent_cuts_announcements_short(tmp_path: Path) -> None:
    """A `say` (or a ringing timer) in progress when the daemon stops is cancelled
    with the turn, not left speaking into a closed player past the stop budget."""
    async def scenario() -> None:
        with FakeCloud(latency=Latency(tts_rtf=1.0)) as fake:
            async with Harness(tmp_path, fake, silence(60.0), extra=NO_EARCONS,
                               gpio=False) as h:
                agent = h.daemon.agent
                say = asyncio.create_task(agent.say(STORY))
                await h.wait_event("audio_out_start", within=30)
                await asyncio.wait_for(agent.close(), 10)
                assert await asyncio.wait_for(say, 5) is False  # cut off, not finished
                assert not agent._speeches

    run(scenario())
