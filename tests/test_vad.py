"""End-of-turn detection with webrtcvad on real synthesized speech."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config import TurnSettings
from edge_agent.errors import ModelError
from edge_agent.tools.voices import espeak, mix_snr, noise, piper, silence
from edge_agent.vad import TAIL_SECONDS, EndOfTurnDetector, Outcome, TurnBounds, VoiceActivity

RATE = 16000
START = 50_000  # an arbitrary absolute index where the turn starts


def run_turn(audio: np.ndarray, *, frame: int = EndOfTurnDetector.FRAME_SAMPLES,
             **settings: float) -> tuple[TurnBounds | None, int]:
    """Feed ``audio`` until the turn ends: the bounds and the index at which
    the detector decided (None and the end of the audio if it never did)."""
    detector = EndOfTurnDetector(TurnSettings(**settings), start_index=START)
    for i in range(0, len(audio), frame):
        chunk = audio[i:i + frame]
        bounds = detector.process(chunk, START + i + len(chunk))
        if bounds is not None:
            return bounds, START + i + len(chunk)
    return None, START + len(audio)


def loud_span(audio: np.ndarray) -> tuple[int, int]:
    """First and one-past-last sample above 5% of the peak."""
    loud = np.nonzero(np.abs(audio.astype(np.int32)) > 0.05 * np.abs(audio).max())[0]
    return int(loud[0]), int(loud[-1]) + 1


def test_turn_ends_after_a_trailing_pause() -> None:
    speech = piper("what time is it")
    lead = silence(0.4)
    bounds, decided = run_turn(np.concatenate([lead, speech, silence(3.0)]))
    assert bounds is not None and bounds.outcome is Outcome.SPEECH_END
    first, last = loud_span(speech)
    speech_end = START + len(lead) + last
    # The last word is kept, plus a short tail, not the whole trailing silence.
    assert speech_end <= bounds.end_index <= speech_end + (TAIL_SECONDS + 0.2) * RATE
    assert abs(bounds.speech_start_index - (START + len(lead) + first)) <= 0.1 * RATE
    assert bounds.start_index == START
    assert bounds.duration == pytest.approx((bounds.end_index - START) / RATE)
    # Decided end_silence after the last voiced frame (webrtcvad adds a little).
    assert speech_end + 0.6 * RATE <= decided <= speech_end + 1.0 * RATE


@pytest.mark.parametrize(("voice", "snr"), [("en-us", 20), ("en-us+f3", 10), ("en-gb", 5)])
def test_turn_ends_in_noise(voice: str, snr: float) -> None:
    speech = espeak("turn off the kitchen lights please", voice=voice)
    audio = np.concatenate([silence(0.5), speech, silence(3.0)])
    bounds, _ = run_turn(mix_snr(audio, noise(6.0, seed=2), snr))
    assert bounds is not None and bounds.outcome is Outcome.SPEECH_END
    speech_end = START + int(0.5 * RATE) + loud_span(speech)[1]
    assert abs(bounds.end_index - speech_end) <= 0.5 * RATE


def test_mid_sentence_pause_shorter_than_end_silence_does_not_end_the_turn() -> None:
    first, second = piper("set a timer"), piper("for ten minutes")
    # Trimmed so the pause between the words is exactly 0.5 s (webrtcvad's own
    # hangover makes it look ~0.4 s).
    first = first[: loud_span(first)[1]]
    second = second[loud_span(second)[0]:loud_span(second)[1]]
    lead, pause = silence(0.3), silence(0.5)
    audio = np.concatenate([lead, first, pause, second, silence(2.0)])
    bounds, _ = run_turn(audio, end_silence=0.6)
    assert bounds is not None and bounds.outcome is Outcome.SPEECH_END
    assert bounds.end_index >= START + len(lead) + len(first) + len(pause) + len(second)
    # The same audio with an end_silence shorter than the pause does end there.
    early, _ = run_turn(audio, end_silence=0.25)
    assert early is not None and early.end_index < START + len(lead) + len(first) + len(pause)


def test_long_speech_is_cut_at_max_seconds() -> None:
    talk = np.concatenate([piper("and then we walked along the river for a long time")] * 4)
    bounds, decided = run_turn(talk, max_seconds=3.0)
    assert bounds is not None and bounds.outcome is Outcome.MAX_LENGTH
    assert bounds.end_index == decided
    assert bounds.duration == pytest.approx(3.0, abs=0.05)
    assert bounds.speech_start_index is not None


@pytest.mark.parametrize("background", ["silence", "noise"])
def test_no_speech_timeout(background: str) -> None:
    audio = silence(8.0) if background == "silence" else noise(8.0, level=500, seed=4)
    bounds, _ = run_turn(audio, no_speech_timeout=4.0)
    assert bounds is not None and bounds.outcome is Outcome.NO_SPEECH
    assert bounds.speech_start_index is None
    assert bounds.duration == pytest.approx(4.0, abs=0.05)


def test_speech_starting_just_before_the_timeout_is_not_cut() -> None:
    speech = piper("what is on my calendar tomorrow")
    bounds, _ = run_turn(np.concatenate([silence(3.9), speech, silence(2.0)]),
                         no_speech_timeout=4.0)
    assert bounds is not None and bounds.outcome is Outcome.SPEECH_END
    assert bounds.end_index >= START + int(3.9 * RATE) + loud_span(speech)[1]


def test_burst_shorter_than_min_speech_is_not_a_turn() -> None:
    burst = piper("hm")[: int(0.15 * RATE)]
    audio = np.concatenate([silence(0.5), burst, silence(4.0)])
    bounds, _ = run_turn(audio, min_speech=0.4, no_speech_timeout=3.0)
    assert bounds is not None and bounds.outcome is Outcome.NO_SPEECH
    # With a lower minimum the same burst counts as speech (the test can fail).
    short, _ = run_turn(audio, min_speech=0.05, no_speech_timeout=3.0)
    assert short is not None and short.outcome is Outcome.SPEECH_END


def test_push_to_talk_release_ends_the_turn() -> None:
    detector = EndOfTurnDetector(TurnSettings(), start_index=START)
    speech = piper("play some music")
    assert not detector.speaking
    assert detector.process(speech, START + len(speech)) is None
    assert detector.speaking
    bounds = detector.release(START + len(speech) + 100)
    assert bounds.outcome is Outcome.RELEASED
    assert bounds.end_index == START + len(speech) + 100
    assert bounds.speech_start_index is not None
    # Once over, the turn stays over with the same bounds.
    assert detector.process(silence(2.0), START + len(speech) + 32100) is bounds
    assert detector.release(START + 99_999) is bounds


def test_frames_of_any_size_give_the_same_bounds() -> None:
    audio = np.concatenate([silence(0.3), piper("what time is it"), silence(1.5)])
    assert run_turn(audio, frame=1280)[0] == run_turn(audio)[0] == run_turn(audio, frame=333)[0]


def test_voice_activity() -> None:
    vad = VoiceActivity(3, frame_ms=20)
    assert vad.frame_samples == 320
    assert not vad.any_speech(silence(1.0))
    assert vad.any_speech(piper("hello there"))
    with pytest.raises(ModelError):
        VoiceActivity(7)
    with pytest.raises(ModelError):
        VoiceActivity(2, frame_ms=25)


def test_pauses_are_reported_until_the_turn_ends_on_the_same_speech() -> None:
    # "set a timer for ... ten minutes": the first pause is followed by more words,
    # the last one ends the turn; only the last is the same speech as the turn's end.
    audio = np.concatenate([silence(0.3), piper("Set a timer for"), silence(0.35),
                            piper("ten minutes"), silence(1.5)])
    detector = EndOfTurnDetector(TurnSettings(), start_index=START)
    n = detector.FRAME_SAMPLES
    pauses = []
    bounds = None
    for i in range(0, len(audio), n):
        bounds = detector.process(audio[i:i + n], START + i + n)
        if bounds is not None:
            break
        pause = detector.pause()
        if pause is not None and pause.seconds >= 0.25 and (
                not pauses or pauses[-1].voiced_end_index != pause.voiced_end_index):
            pauses.append(pause)
    assert bounds is not None and len(pauses) == 2
    first, last = pauses
    assert not first.same_speech(bounds)
    assert last.same_speech(bounds)
    assert last.end_index <= bounds.end_index
    assert first.voiced_end_index < START + int(1.5 * RATE) < last.voiced_end_index
