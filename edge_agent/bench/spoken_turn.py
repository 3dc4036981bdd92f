"""Turns measured from outside: the whole daemon hears questions through its
.wav microphone in real time and answers into its .wav speaker; a turn's
latency runs from the end of the spoken question (its last audible sample) to
the first answer frame handed to the speaker, so the end-of-turn wait
(``turn.end_silence``) is in it.

Each pipeline gets a freshly started daemon: the first turn after start is
reported apart from the median of the turns after it. The device's own share
is read off the fake cloud's clock (requests arrive, responses leave) next to
the turn's own timings: transcript out of the cloud (or, for one streamed before
the end of the turn, the turn's start) to the chat request in,
first sentence to the speech request in, TTS first byte out to the first
frame handed to the speaker.

Also: utterances with a natural pause in them ("set a timer for... ten
minutes") with speculation on, counting the discarded guesses and checking
that none of them changed anything (timers, volume, history, transcripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.agent.turn import TurnResult, TurnRunner
from edge_agent.audio import Player
from edge_agent.testbed.fakecloud import FakeCloud, Latency, Request
from edge_agent.testbed.fakerealtime import FakeRealtime
from edge_agent.testbed.harness import NO_EARCONS, Harness
from edge_agent.testbed.wait import poll_until
from edge_agent.tools.voices import RATE, audible_end, piper, silence

START_SECONDS = 20.0
"""Silence before the first question: the start-up prewarm (connection, cloud
rehearsal, Piper's notices) is over, as it is when somebody first speaks to a
speaker that booted a little while ago (``warm_before_first_turn`` says if it was;
a loaded 2-core machine needed more than 8 s)."""
BEFORE = 0.6
"""The turn is triggered this long before the question starts."""
AFTER = 3.8
"""Silence after a question: its answer (under 2 s of audio) has played by then."""
MODES = {"today": "speculative = false", "speculative": "speculative = true",
         "speculative_pause_0.2": "speculative = true\nspeculative_pause = 0.2",
         "streaming": "speculative = true", "streaming_speculative_off": "speculative = false",
         "naive": "speculative = false"}
"""(a) end_silence then STT, (b) speculative turns (at the default pause, 0.15 s, and
at the former default, 0.2 s), (c) streaming recognition (cloud.stt_streaming;
with speculative turns the stream is committed at the pause), (d) the naive
cascade: [turn] settings of each."""
STREAMING_MODES = frozenset({"streaming", "streaming_speculative_off"})
STREAM_COMMIT_TO_TRANSCRIPT = 0.100
"""Injected into streaming recognition from the commit to the completed transcript
(the batch upload's 300 ms includes transcribing the whole utterance at once; a
stream has heard it already and only finishes the last words)."""
TURN_TIMEOUT = 30.0
LATE_SECONDS = 0.3
"""A trigger later than this (the previous turn overran on a loaded machine) is skipped."""
MISSED_AFTER = 8.0
"""A turn not begun this long after its question ended was missed."""


class NaiveTurns:
    """The naive cascade as a turn pipeline the agent can run: the whole transcript,
    then the whole reply, then all of its audio, then play."""

    def __init__(self, runner: TurnRunner, player: Player) -> None:
        self.runner = runner
        self.player = player

    async def run(self, audio: np.ndarray, *, end_of_speech: float, turn_id: int,
                  **_: Any) -> TurnResult:
        runner = self.runner
        assert runner.cloud_stt and runner.cloud_llm and runner.cloud_tts
        text = await runner.cloud_stt.transcribe(audio)
        reply = "".join([delta async for delta in runner.cloud_llm.reply(
            runner.conversation.messages(text), runner.toolbox)])
        tts = runner.cloud_tts
        pcm = b"".join([chunk async for chunk in tts.synthesize(reply)])
        stream = self.player.stream(engine=tts.name)
        stream.write(pcm, tts.sample_rate)
        stream.end()
        await stream.drained()
        assert stream.first_frame_at is not None
        return TurnResult(text, "cloud", reply, "cloud", {
            "end_of_speech": end_of_speech, "first_audio": stream.first_frame_at}, True)

    async def speak(self, text: str, *, turn_id: int | None = None) -> bool:
        return await self.runner.speak(text, turn_id=turn_id)

    async def prewarm(self) -> None:
        await self.runner.prewarm()


@dataclass(frozen=True)
class Block:
    trigger: int
    """Input sample where the turn is triggered (as a button tap would)."""
    end: int
    """Input sample where the question stops being audible."""


def timeline(utterances: list[np.ndarray]) -> tuple[np.ndarray, list[Block]]:
    """The microphone's input: each utterance after a trigger point, then silence."""
    parts, blocks, at = [silence(START_SECONDS - BEFORE)], [], 0
    at = len(parts[0])
    for utterance in utterances:
        blocks.append(Block(at, at + len(silence(BEFORE)) + audible_end(utterance)))
        parts += [silence(BEFORE), utterance, silence(AFTER)]
        at += len(silence(BEFORE)) + len(utterance) + len(silence(AFTER))
    return np.concatenate(parts), blocks


def _harness(tmp: Path, fake: FakeCloud, audio: np.ndarray, *, turn: str,
             preroll: float | None = None, stream_url: str = "") -> Harness:
    h = Harness(tmp, fake, audio, extra=f"{NO_EARCONS}[turn]\n{turn}\n", gpio=False)
    if preroll is not None:
        h.config.write_text(h.config.read_text().replace(
            "[audio]\n", f"[audio]\npreroll_seconds = {preroll}\n"))
    if stream_url:
        h.config.write_text(h.config.read_text().replace(
            "[cloud]\n", f'[cloud]\nstt_streaming = true\nstt_streaming_url = "{stream_url}"\n'))
    return h


async def _turns(h: Harness, blocks: list[Block],
                 each: Callable[[int, list[Request]], None] | None = None,
                 streamed: FakeRealtime | None = None) -> list[dict[str, Any]]:
    """Trigger every block's turn; per turn: latency and the device's own steps."""
    agent, fake = h.daemon.agent, h.fake
    clock = time.monotonic() - time.perf_counter()  # the fake stamps perf_counter
    out = []
    for k, block in enumerate(blocks, 1):
        await h.at_input_second(block.trigger / RATE)
        late = (h.daemon.ring.total - block.trigger) / RATE
        if late > LATE_SECONDS:
            # Triggered after the question began, the turn would hear a cut question
            # or the next one: skip it instead.
            out.append({"missed": True, "trigger_late_s": late, "requests": {}})
            if each is not None:
                each(k, [])
            continue
        first_request = len(fake.requests)
        wasted_before = agent.counts["speculations_wasted"]
        turns_before = agent.counts["turns"]
        agent.trigger("bench")
        give_up = block.end + int(MISSED_AFTER * RATE)
        await poll_until(lambda before=turns_before, give_up=give_up: not agent.busy and (
            agent.counts["turns"] > before or h.daemon.ring.total > give_up), TURN_TIMEOUT)
        requests = fake.requests[first_request:]
        if each is not None:
            each(k, requests)
        timings = agent.last_turns[-1].timings if agent.counts["turns"] > turns_before else {}
        if "first_audio" not in timings:
            # Not answered (the machine too loaded to trigger in time, or an error).
            out.append({"missed": True, "trigger_late_s": late, "requests": {
                stage: sum(r.stage == stage for r in requests) for stage in ("stt", "llm", "tts")}})
            continue
        end = h.daemon.ring.time_of(block.end)
        turn: dict[str, Any] = {
            "latency_s": timings["first_audio"] - end,
            "speculations_wasted": agent.counts["speculations_wasted"] - wasted_before,
            "requests": {stage: sum(r.stage == stage for r in requests)
                         for stage in ("stt", "llm", "tts")},
        }
        transcribed = ([t for s in streamed.sessions for t in s.completed_at]
                       if streamed is not None else None)
        turn.update(_device_steps(timings, requests, clock, transcribed))
        out.append(turn)
    return out


def _device_steps(timings: dict[str, float], requests: list[Request],
                  clock: float, transcribed: list[float] | None = None) -> dict[str, float]:
    """The device's own time at each hand-over of the answer that was played.
    ``transcribed``: when the streaming fake sent its transcripts (perf_counter)."""
    llm = [r for r in requests if r.stage == "llm"]
    if not llm or "first_sentence" not in timings:
        return {}
    chat = llm[-1]  # the one answered: a discarded guess's requests come before it
    stt = [r.responded_at for r in requests if r.stage == "stt" and r.responded_at is not None
           and r.responded_at < chat.received_at]
    stt += [t for t in transcribed or () if t < chat.received_at]
    tts = [r for r in requests if r.stage == "tts" and r.received_at > chat.received_at]
    steps = {}
    if stt:
        # A transcript streamed before the end of the turn waits for the turn to begin.
        ready = max(max(stt), timings.get("began", 0.0) - clock)
        steps["transcript_to_llm_request_s"] = chat.received_at - ready
    if tts:
        steps["sentence_to_tts_request_s"] = tts[0].received_at + clock - timings[
            "first_sentence"]
        if tts[0].responded_at is not None:
            first_byte = tts[0].responded_at + clock
            steps["tts_first_byte_to_audio_s"] = timings["first_audio"] - first_byte
            if "audio_queued" in timings:
                # Split at the player: the device's software, from the first byte (or
                # the confirmation a held answer waits for) to the audio queued; then
                # the wait for the output's next period (10 ms, on the .wav speaker too).
                ready = max(first_byte, timings.get("confirmed", first_byte))
                steps["tts_first_byte_to_player_s"] = timings["audio_queued"] - ready
                steps["player_to_output_period_s"] = (timings["first_audio"]
                                                      - timings["audio_queued"])
            if "confirmed" in timings:
                # Above zero: end_silence had confirmed the turn before the answer's
                # first audio arrived, so a shorter wait would not have played sooner.
                steps["confirmed_before_first_byte_s"] = first_byte - timings["confirmed"]
    return steps


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _summary(turns: list[dict[str, Any]]) -> dict[str, Any]:
    missed = sum("missed" in t for t in turns)
    if "missed" in turns[0]:
        return {"missed_turns": missed, "first_turn_missed": True}
    turns = [t for t in turns if "missed" not in t]
    first, rest = turns[0], turns[1:]
    steps = ("transcript_to_llm_request_s", "sentence_to_tts_request_s",
             "tts_first_byte_to_audio_s", "tts_first_byte_to_player_s",
             "player_to_output_period_s", "confirmed_before_first_byte_s")
    out: dict[str, Any] = {
        "first_turn_ms": _ms(first["latency_s"]),
        "median_ms": _ms(statistics.median(t["latency_s"] for t in rest)),
        "max_ms": _ms(max(t["latency_s"] for t in rest)),
        "speculations_wasted": sum(t["speculations_wasted"] for t in turns),
        "missed_turns": missed,
    }
    for step in steps:
        if step in first:
            name = step.removesuffix("_s")
            out[f"first_turn_{name}_ms"] = _ms(first[step])
            out[f"median_{name}_ms"] = _ms(statistics.median(t[step] for t in rest))
            out[f"max_{name}_ms"] = _ms(max(t[step] for t in turns))
            if step == "confirmed_before_first_byte_s":  # its least is what counts
                out[f"min_{name}_ms"] = _ms(min(t[step] for t in turns))
    return out


async def measure(tmp: Path, turns: int, *, transcript: str, reply: str,
                  latency: Latency, question: np.ndarray,
                  modes: tuple[str, ...] = tuple(MODES)) -> dict[str, Any]:
    """Each mode on a freshly started daemon: a first turn, then ``turns`` more."""
    audio, blocks = timeline([question] * (turns + 1))
    results: dict[str, Any] = {}
    for mode in modes:
        turn = MODES[mode]
        with contextlib.ExitStack() as servers:
            fake = servers.enter_context(FakeCloud(
                transcript=transcript, reply=reply, latency=latency, seconds_per_char=0.01))
            streamed = servers.enter_context(FakeRealtime(
                transcript=transcript, latency=STREAM_COMMIT_TO_TRANSCRIPT)) if (
                mode in STREAMING_MODES) else None
            run_dir = tmp / mode
            run_dir.mkdir()
            async with _harness(run_dir, fake, audio, turn=turn,
                                stream_url=streamed.url if streamed else "") as h:
                agent = h.daemon.agent
                if mode == "naive":
                    assert isinstance(agent.turns, TurnRunner)
                    agent.turns = NaiveTurns(agent.turns, h.daemon.player)
                await asyncio.wait_for(h.daemon.warmed.wait(), 120)
                warm = h.daemon.ring.total < blocks[0].trigger
                results[mode] = {**_summary(await _turns(h, blocks, streamed=streamed)),
                                 "warm_before_first_turn": warm}
                if streamed is not None:
                    results[mode]["stt_uploads"] = len(fake.requests_for("stt"))
                    # More than one a turn: a pause mid-question cut it into segments.
                    results[mode]["stream_commits"] = sum(
                        s.events.count("input_audio_buffer.commit") for s in streamed.sessions)
                    results[mode]["stream_commit_to_transcript_ms"] = _ms(
                        STREAM_COMMIT_TO_TRANSCRIPT)
    return results


# --- natural pauses -------------------------------------------------------------------

PAUSED = (
    ("Set a timer for", "ten minutes."),
    ("Turn the volume", "down."),
    ("What is the weather", "in Paris tomorrow?"),
    ("Remind me in", "five minutes."),
    ("Tell me", "a joke."),
)
PAUSE_SECONDS = 0.35
"""The pause inside each utterance: past speculative_pause, short of end_silence."""


async def pauses(tmp: Path, *, latency: Latency) -> dict[str, Any]:
    """Utterances with a pause in them, speculation on: wasted guesses, and what
    changed (each command must act exactly once)."""
    utterances = [np.concatenate([piper(a), silence(PAUSE_SECONDS), piper(b)])
                  for a, b in PAUSED]
    audio, blocks = timeline(utterances)
    # No pre-roll: the upload starts at the trigger, so its length says how much
    # of the utterance it holds (the first part only, or all of it).
    whole = [(len(silence(BEFORE)) + len(piper(a)) + len(silence(PAUSE_SECONDS)))
             for a, _ in PAUSED]
    daemon: list[Any] = []

    def transcript(upload: np.ndarray) -> str:
        # Which utterance: the last one triggered before the microphone's position.
        at = daemon[0].ring.total
        k = max(i for i, b in enumerate(blocks) if b.trigger <= at)
        first, rest = PAUSED[k]
        heard = f"{first} {rest}" if len(upload) > whole[k] else first
        return heard.lower().rstrip(".?")

    per_turn: list[dict[str, Any]] = []
    with FakeCloud(transcript=transcript, reply="Here you go.", latency=latency) as fake:
        run_dir = tmp / "pauses"
        run_dir.mkdir()
        async with _harness(run_dir, fake, audio, turn=MODES["speculative"],
                            preroll=0.0) as h:
            daemon.append(h.daemon)
            volume = h.daemon.agent.volume

            def each(k: int, requests: list[Request]) -> None:
                per_turn.append({"utterance": " ... ".join(PAUSED[k - 1]),
                                 "requests": [r.stage for r in requests]})

            turns = await _turns(h, blocks, each)
            timers = sorted(t.duration for t in h.daemon.timers.remaining())
            changed = {
                "timers_set_s": timers,
                "volume_change": round(h.daemon.agent.volume - volume, 3),
                "history_entries": len(h.daemon.conversation),
                "transcripts": [e.fields["text"] for e in h.named("transcript")],
            }
    for record, turn in zip(per_turn, turns, strict=True):
        if "missed" in turn:
            record["missed"] = True
            continue
        record["speculations_wasted"] = turn["speculations_wasted"]
        record["latency_ms"] = _ms(turn["latency_s"])
    expected = {"timers_set_s": [300.0, 600.0], "volume_change": -0.1,
                "history_entries": len(PAUSED),
                "transcripts": [f"{a} {b}".lower().rstrip(".?") for a, b in PAUSED]}
    return {
        "pause_s": PAUSE_SECONDS,
        "utterances": per_turn,
        "speculations_wasted": sum(t.get("speculations_wasted", 0) for t in turns),
        "requests": {stage: sum(t.get("requests", {}).get(stage, 0) for t in turns)
                     for stage in ("stt", "llm", "tts")},
        "state_after": changed,
        "state_as_expected": changed == expected,
    }
