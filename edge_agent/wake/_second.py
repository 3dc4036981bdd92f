"""A third vote for a wake word: edge-agent's own head, heard only when a
stock engine seconds it.

The head (trained on Piper and espeak-ng) hears takes the stock engines
score just under their thresholds, but alone it also wakes on ordinary speech
now and then, and on sound-alikes. A stock engine that scored at all nearby
(``SECOND``) is evidence from a model trained by other people on other data
that something like the word was said: the two together pass where either
alone would be a coin toss. The detector and the evaluation
(edge_agent/tools/wake_eval.py) both judge with this class, so the figures
are the daemon's.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_THRESHOLD = 0.95
"""The head's score that counts (0.5 is its own operating point, alone)."""
SECOND = 0.02
"""The stock engines' score that seconds it. HEAD_THRESHOLD and SECOND were
chosen on validation data only (edge_agent/tools/wake_eval.py's ``choose``,
docs/wake-word.md): of the rules that add no false wake to the stock engines'
on 6 h of validation speech and no sound-alike hit, the one that missed the
fewest espeak-ng takes."""
WITHIN_STEPS = 12
"""Both must pass within this many 80 ms steps of each other (0.96 s)."""
NEVER = 1 << 30


@dataclass(frozen=True)
class SecondRule:
    head: float = HEAD_THRESHOLD
    second: float = SECOND
    within: int = WITHIN_STEPS


class SecondedVote:
    """Fed the head's score and the best stock score every step; passes while
    both have passed within ``rule.within`` steps."""

    def __init__(self, rule: SecondRule = SecondRule()) -> None:
        self.rule = rule
        self.reset()

    def reset(self) -> None:
        """Forget both (a reset detector, warm-up, a closed idle gate, playback)."""
        self.head_age = NEVER
        """Steps since the head last passed (0: this one)."""
        self.first_age = NEVER
        """Steps since the first pass of the head's current burst: where the phrase
        ended, less the head's lag."""
        self.peak = 0.0
        """The head's highest score in its current burst: what a detection reports."""
        self._second_age = NEVER

    def step(self, head: float, second: float) -> bool:
        r = self.rule
        self.head_age = min(self.head_age + 1, NEVER)
        self.first_age = min(self.first_age + 1, NEVER)
        if head >= r.head:
            if self.head_age >= r.within:  # no pass in the window: a new burst
                self.first_age, self.peak = 0, 0.0
            self.head_age, self.peak = 0, max(self.peak, head)
        self._second_age = 0 if second >= r.second else min(self._second_age + 1, NEVER)
        return self.head_age < r.within and self._second_age < r.within
