"""Pauses inside read requests, as the end-of-turn detector hears them: how
often a speculative answer would start at each ``turn.speculative_pause`` and
then be discarded because the reader went on (a wasted cloud request, never a
wrong answer), and how often a pause outlasted ``turn.end_silence`` and cut the
request short.

Validation data (turn.speculative_pause was chosen on it): twelve household
requests, four with a comma, read by every voice of the Piper, espeak-ng and
CMU families the wake evaluation uses, as synthesized and over a -60 dBFS
noise floor. Synthesizers pause less than people do: people who hesitate
mid-request waste more guesses than this.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_agent.config import TurnSettings
from edge_agent.tools.voices import RATE, audible_end, noise, silence
from edge_agent.tools.wake_eval import FAMILIES
from edge_agent.vad._turn import EndOfTurnDetector

REQUESTS = ("what is the weather like in Berlin tomorrow morning",
            "set a timer for twenty five minutes",
            "remind me to call my sister when I get home",
            "how many grams are there in a pound",
            "play some quiet music in the living room",
            "turn the volume down a little",
            "what time does the pharmacy close on Sundays",
            "tell me a short story about a lighthouse keeper",
            "if it rains tomorrow, should I take the bus or walk",
            "add milk, eggs and bread to the shopping list",
            "who wrote the novel war and peace, and when",
            "well, convert seventy degrees fahrenheit to celsius")
PAUSES = (0.15, 0.2, 0.25, 0.3)
"""The speculative_pause values compared (seconds)."""
FLOOR = {"as synthesized": 0.0, "noise floor -60 dBFS": 33.0}
"""Background added under each reading (noise level: RMS in int16 units)."""


def pauses(audio: np.ndarray, turn: TurnSettings) -> tuple[list[float], int | None]:
    """The longest silence of each pause before the turn ended, and where the
    last voiced frame of the ended turn was (None: it never ended)."""
    detector = EndOfTurnDetector(turn, start_index=0)
    longest: dict[int, float] = {}
    n = detector.FRAME_SAMPLES
    for start in range(0, len(audio) - n + 1, n):
        bounds = detector.process(audio[start:start + n], start + n)
        pause = detector.pause()
        if pause is not None:
            key = pause.voiced_end_index
            longest[key] = max(longest.get(key, 0.0), pause.seconds)
        if bounds is not None:
            end = bounds.voiced_end_index
            return [s for k, s in longest.items() if k != end], end
    return list(longest.values()), None


def measure() -> dict[str, Any]:
    turn = TurnSettings()
    lead = silence(0.5)
    report: dict[str, Any] = {"end_silence_s": turn.end_silence, "requests": len(REQUESTS)}
    for condition, level in FLOOR.items():
        per_family = {}
        for family, voices in FAMILIES.items():
            guesses = dict.fromkeys(PAUSES, 0)
            cut = readings = 0
            for voice in voices.values():
                for text in REQUESTS:
                    speech = voice(text)
                    audio = np.concatenate([lead, speech, silence(1.5)])
                    if level:
                        floor = np.resize(noise(3.0, level=level, seed=7), audio.shape)
                        audio = np.clip(audio.astype(np.int32) + floor, -32768,
                                        32767).astype(np.int16)
                    mid, ended = pauses(audio, turn)
                    readings += 1
                    for p in PAUSES:
                        guesses[p] += sum(s >= p for s in mid)
                    spoken_end = len(lead) + audible_end(speech)
                    cut += ended is not None and ended < spoken_end - int(0.2 * RATE)
            per_family[family] = {
                "readings": readings,
                "wasted_guesses_per_request": {str(p): round(guesses[p] / readings, 3)
                                               for p in PAUSES},
                "cut_short": cut,
            }
        report[condition] = per_family
    return report
