"""Wake word then end of turn on one stream and one sample clock, the way the
agent chains them: the turn detector starts at the wake detection's end_index."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config import TurnSettings, WakeSettings
from edge_agent.tools.voices import espeak, mix_snr, noise, piper, silence
from edge_agent.vad import EndOfTurnDetector, Outcome, TurnBounds
from edge_agent.wake import WakeDetector

RATE = 16000
CLOCK = 7_000_000  # absolute index of the stream's first sample (~7 min of uptime)


def loud_span(audio: np.ndarray) -> tuple[int, int]:
    loud = np.nonzero(np.abs(audio.astype(np.int32)) > 0.05 * np.abs(audio).max())[0]
    return int(loud[0]), int(loud[-1]) + 1


def wake_then_turn(stream: np.ndarray) -> tuple[int, TurnBounds]:
    """The wake detection's end_index and the turn bounds that follow it."""
    wake = WakeDetector(WakeSettings())
    frame = WakeDetector.FRAME_SAMPLES
    for i in range(0, len(stream), frame):
        chunk = stream[i:i + frame]
        detection = wake.process(chunk, CLOCK + i + len(chunk))
        if detection is not None:
            break
    assert detection is not None, "no wake word"
    turn = EndOfTurnDetector(TurnSettings(), start_index=detection.end_index)
    position = detection.end_index - CLOCK
    while position < len(stream):
        chunk = stream[position:position + turn.FRAME_SAMPLES]
        position += len(chunk)
        bounds = turn.process(chunk, CLOCK + position)
        if bounds is not None:
            return detection.end_index, bounds
    raise AssertionError("the turn never ended")


@pytest.mark.parametrize("snr", [None, 15.0])
def test_command_said_without_a_pause_is_one_turn(snr: float | None) -> None:
    wake, command = piper("hey jarvis"), piper("what time is it")
    lead = silence(2.0)
    stream = np.concatenate([lead, wake, command, silence(2.0)])
    if snr is not None:
        stream = mix_snr(stream, noise(8.0, seed=6), snr)
    start, bounds = wake_then_turn(stream)
    command_start = CLOCK + len(lead) + len(wake) + loud_span(command)[0]
    command_end = CLOCK + len(lead) + len(wake) + loud_span(command)[1]
    assert bounds.outcome is Outcome.SPEECH_END
    assert bounds.start_index == start
    wake_end = CLOCK + len(lead) + loud_span(wake)[1]
    # From about the end of the wake phrase (never into the command: its
    # first word is not lost) to just after the command.
    assert wake_end - 0.3 * RATE <= start <= command_start
    assert command_end <= bounds.end_index <= command_end + 0.5 * RATE


def test_pause_mid_command_after_the_wake_word() -> None:
    wake = espeak("hey jarvis", voice="en-gb")
    first, second = espeak("set a timer", voice="en-gb"), espeak("for five minutes", voice="en-gb")
    # Trimmed so the pause between the words is exactly 0.4 s (end_silence is 0.6).
    first = first[: loud_span(first)[1]]
    second = second[loud_span(second)[0]:loud_span(second)[1]]
    lead, pause = silence(2.0), silence(0.4)
    stream = np.concatenate([lead, wake, first, pause, second, silence(2.0)])
    _, bounds = wake_then_turn(stream)
    assert bounds.outcome is Outcome.SPEECH_END
    assert bounds.end_index >= CLOCK + len(stream) - len(silence(2.0))


def test_wake_word_alone_times_out() -> None:
    stream = np.concatenate([silence(2.0), piper("hey jarvis"), silence(7.0)])
    start, bounds = wake_then_turn(stream)
    assert bounds.outcome is Outcome.NO_SPEECH
    assert bounds.speech_start_index is None
    assert bounds.end_index - start == pytest.approx(TurnSettings().no_speech_timeout * RATE,
                                                     abs=0.05 * RATE)
