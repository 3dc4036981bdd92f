"""The read-request pause count behind turn.speculative_pause's default."""

from __future__ import annotations

import numpy as np

from edge_agent.bench.read_pauses import pauses
from edge_agent.config import TurnSettings
from edge_agent.tools.voices import piper, silence


def test_a_pause_inside_a_request_is_counted_and_the_end_is_not() -> None:
    audio = np.concatenate([silence(0.5), piper("set a timer for"), silence(0.35),
                            piper("ten minutes"), silence(1.5)])
    mid, ended = pauses(audio, TurnSettings())
    assert ended is not None and ended > len(audio) // 2  # the whole request
    # One pause: the 0.35 s gap plus Piper's own trailing and leading silence.
    assert len(mid) == 1 and 0.35 <= mid[0] < 0.6


def test_a_pause_longer_than_end_silence_ends_the_turn() -> None:
    audio = np.concatenate([silence(0.5), piper("set a timer for"), silence(1.0),
                            piper("ten minutes"), silence(1.5)])
    mid, ended = pauses(audio, TurnSettings())
    assert ended is not None and ended < len(audio) // 2  # cut after "for"
    assert mid == []
