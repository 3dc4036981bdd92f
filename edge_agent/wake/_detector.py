"""The wake-word detector: independent engines on one 16 kHz clock in 80 ms
steps, fused, with the guards a speaker needs around them (per-model
thresholds, warm-up after a reset, a refractory period, a stricter threshold
while playing) and an idle gate that skips every net while nobody speaks.

A bundled wake word is scored by each engine in ``wake.engines`` that ships
it: openWakeWord's classifier on its shared speech embeddings, and
microWakeWord's streaming model (_micro.py). They were trained by different
people on different data and miss different takes, so the word counts as
heard when either passes its threshold (OR fusion). Scores share one scale,
each engine's own operating point reading 0.5. With ``wake.seconded_head``
edge-agent's own head votes as well, heard only when a stock engine seconds
it (_second.py).

openWakeWord's embeddings move with where the phrase falls in their window;
with ``wake.phases`` above 1, once any engine has scored ``LOOK`` in the last
second, openWakeWord's classifiers on them are also scored at the other
phases of the step and each keeps its best (_features.py); the heads score
at one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.config import SECONDED_HEAD, WakeSettings, wake_model_name
from edge_agent.errors import ModelError
from edge_agent.vad._webrtc import VoiceActivity
from edge_agent.wake._diagnostics import WakeDiagnostics
from edge_agent.wake._features import CHUNK, MELS_PER_CHUNK, StreamingFeatures
from edge_agent.wake._micro import MicroScorer, bundled_micro_dir, bundled_micro_models
from edge_agent.wake._models import bundled_head
from edge_agent.wake._own_voice import OwnVoice, Played
from edge_agent.wake._scoring import DEFAULT_LAG, MICRO_LAG, WakeWordScorer
from edge_agent.wake._second import HEAD_THRESHOLD, WITHIN_STEPS, SecondedVote, SecondRule

log = logging.getLogger(__name__)

RATE = 16000
OPENWAKEWORD = "openwakeword"
MICROWAKEWORD = "microwakeword"

GATE_AGGRESSIVENESS = 0
"""webrtcvad mode of the idle gate: the most permissive, so the gate only ever
closes on audio that surely holds no voice."""

EMBEDDING_SPAN = 12400
"""Samples behind one embedding: 76 mel frames, 160 apart, 400 wide (0.775 s)."""
LOOK = 0.05
"""A score this high, from any engine at the step's own phase, has the other
phases scored for LOOK_STEPS steps. Chosen on validation takes (espeak-ng):
0.02-0.1 missed as few as scoring every phase on every step, and ordinary
speech seldom opens the look (docs/wake-word.md)."""
LOOK_STEPS = WITHIN_STEPS


@dataclass(frozen=True)
class WakeDetection:
    model: str
    """"hey_jarvis", or a custom model's file stem."""
    score: float
    end_index: int
    """Absolute sample index where the wake phrase is estimated to end."""
    engine: str = OPENWAKEWORD
    """The engine whose score passed first."""


def _micro_scorer(model: str) -> MicroScorer:
    """A bundled microWakeWord model by name, or a custom one by its .json path."""
    if model.endswith(".json"):
        return MicroScorer(Path(model).expanduser())
    return MicroScorer(bundled_micro_dir() / f"{model}.json")


class WakeDetector:
    """Wake-word engines on a 16 kHz int16 stream fed in 80 ms frames.

    ``process`` is CPU-bound (about a millisecond per frame on x86, a few on a
    Pi): call it from a worker thread, never on the event loop. Not
    thread-safe: one caller at a time.
    """

    FRAME_SAMPLES = CHUNK

    def __init__(self, settings: WakeSettings, *, gate: bool = True,
                 wanted: Callable[[], bool] | None = None) -> None:
        """``gate=False`` runs the nets on every frame (benchmarks). ``wanted``:
        the nets run only while it is true too (the own-voice detector: while
        the microphone's looks)."""
        if not settings.models:
            raise ModelError("no wake-word model configured (wake.models is empty)")
        self.settings = settings
        self.model_names = [wake_model_name(m) for m in settings.models]
        self._words: list[WakeWordScorer] = []
        self._micro: list[MicroScorer] = []
        micro_words = bundled_micro_models()
        for model in settings.models:
            if model.endswith(".json"):
                self._micro.append(_micro_scorer(model))
                continue
            bundled = wake_model_name(model) == model
            if not bundled or OPENWAKEWORD in settings.engines or model not in micro_words:
                head = bundled_head(model) if settings.own_head else None
                self._words.append(WakeWordScorer(model, head=head))
            if bundled and MICROWAKEWORD in settings.engines and model in micro_words:
                self._micro.append(_micro_scorer(model))
        self._heads: list[tuple[WakeWordScorer, SecondedVote]] = []
        # The head reads openWakeWord's embeddings: it rides on that engine.
        if settings.seconded_head and not settings.own_head and OPENWAKEWORD in settings.engines:
            stock = {s.name for s in [*self._words, *self._micro]}
            for model in dict.fromkeys(settings.models):
                head = bundled_head(model)
                limit = self._base_threshold(model, SECONDED_HEAD)
                # A threshold of 1.0 turns the vote off (its scores reach 1.0 exactly).
                if head is not None and model in stock and limit < 1.0:
                    rule = SecondRule(head=limit)
                    self._heads.append((WakeWordScorer(model, head=head, engine=SECONDED_HEAD),
                                        SecondedVote(rule)))
        nets = [*self._words, *(scorer for scorer, _ in self._heads)]
        self.engines = sorted({s.engine for s in [*nets, *self._micro]})
        windows = max((word.windows for word in nets), default=1)
        step = MELS_PER_CHUNK // settings.phases
        self._phases = tuple(range(step, MELS_PER_CHUNK, step))
        self._features = StreamingFeatures(windows, self._phases) if nets else None
        # 20 ms frames tile an 80 ms chunk exactly.
        self._gate = VoiceActivity(GATE_AGGRESSIVENESS, frame_ms=20) if gate else None
        self._wanted = wanted
        self._step_end, self._looked_at = 0, -(1 << 62)
        """The last step's end, and the last at which any engine scored LOOK (never)."""
        # The gate stays open while the audio the classifiers look at (16
        # embeddings for the bundled models: ~2 s) still holds a voiced frame.
        self._gate_hold = (windows - 1) * CHUNK + EMBEDDING_SPAN
        self._playing = False
        self.echo_ready: Callable[[], bool] = lambda: False
        """Whether echo cancellation has converged (and not diverged since): then
        the speaker's own voice is gone from the audio, and playback needs no
        raised threshold."""
        self._own: OwnVoice | None = None
        self._ignored: list[WakeDetection] = []
        self._pending = np.zeros(0, dtype=np.int16)
        self.diagnostics = WakeDiagnostics(CHUNK / RATE)
        self.last_scores: dict[str, float] = {}
        """Each model's fused score on the last 80 ms step (0.0 while the gate is closed)."""
        self.engine_scores: dict[tuple[str, str], float] = {}
        """The same per (model, engine), before fusion."""
        self.reset()

    def reset(self) -> None:
        """Forget all audio; detections stay suppressed for ``warmup_seconds``."""
        if self._features is not None:
            self._features.reset()
        for micro in self._micro:
            micro.reset()
        for _, vote in self._heads:
            vote.reset()
        self._pending = np.zeros(0, dtype=np.int16)
        self._warmup_left = int(self.settings.warmup_seconds * RATE)
        self._refractory_until: dict[str, int] = {}
        self._voice_quiet = self._gate_hold  # as if the last voice was long ago
        self._look_age = LOOK_STEPS + 1
        if self._gate is not None:
            self._gate.reset()
        self._unscored()

    def set_playing(self, playing: bool) -> None:
        """While the speaker talks, require ``playback_threshold`` (or a higher
        per-model threshold) so its own voice does not wake it, unless echo
        cancellation removes that voice (``echo_ready``)."""
        self._playing = playing

    def follow_playback(self, ready: Callable[[], bool], played: Played | None) -> None:
        """Echo cancellation's state (``echo_ready``) and what the speaker played,
        on the capture clock: a detection while the played audio itself holds
        the wake word is the speaker's own voice, and ignored (_own_voice.py).
        Loads a second detector for the played audio."""
        self.echo_ready = ready
        self._own = None if played is None else OwnVoice(
            WakeDetector(self.settings, wanted=self._looking), played)

    def threshold(self, model: str, engine: str = OPENWAKEWORD) -> float:
        """``wake.thresholds`` by "model:engine", else by model, else ``wake.threshold``
        (the seconded head: by "model:own_head", else HEAD_THRESHOLD or the
        model's threshold if that is stricter)."""
        base = self._base_threshold(model, engine)
        return max(base, self.settings.playback_threshold) if self._raised() else base

    def _base_threshold(self, model: str, engine: str) -> float:
        given = self.settings.thresholds
        base = given.get(model, self.settings.threshold)
        return given.get(f"{model}:{engine}",
                         max(HEAD_THRESHOLD, base) if engine == SECONDED_HEAD else base)

    def _raised(self) -> bool:
        return self._playing and not self.echo_ready()

    def status(self) -> dict[str, object]:
        """Engines, thresholds, each engine's recent peak and the near misses."""
        return {"engines": list(self.engines),
                "own_voice_ignored": self._own.ignored if self._own is not None else 0,
                "thresholds": {m: self.threshold(m) for m in self.model_names},
                "engine_thresholds": {m: {e: self.threshold(m, e) for (name, e)
                                          in self.engine_scores if name == m}
                                      for m in self.model_names},
                **self.diagnostics.to_dict()}

    def process(self, frame: np.ndarray, end_index: int) -> WakeDetection | None:
        """Feed audio ending at absolute sample ``end_index``. Frames of any
        length work (leftovers wait for the next call); 1280 is the natural one."""
        audio = np.concatenate([self._pending, frame]) if len(self._pending) else frame
        whole = len(audio) - len(audio) % CHUNK
        self._pending = audio[whole:].copy()
        first_end = end_index - len(self._pending) - whole + CHUNK
        found: WakeDetection | None = None
        for i, start in enumerate(range(0, whole, CHUNK)):
            detection = self._step(audio[start:start + CHUNK], first_end + i * CHUNK)
            found = found or detection
        if self._own is not None:  # after: a look opened by this frame has it scored
            self._own.follow(end_index - len(frame), len(frame))
            if found is not None and self._own.said(end_index):
                log.info("wake word %s in the speaker's own playback: ignored", found.model)
                self._ignored.append(found)
                return None
        return found

    def ignored_as_own_voice(self) -> list[WakeDetection]:
        """Detections ignored as the speaker's own voice since the last call
        (the wake_own_voice events)."""
        ignored, self._ignored = self._ignored, []
        return ignored

    def _step(self, chunk: np.ndarray, end_index: int) -> WakeDetection | None:
        self._step_end = end_index
        if self._features is not None:
            self._features.push(chunk)
        self._warmup_left = max(0, self._warmup_left - CHUNK)
        if not self._gate_open(chunk):
            for micro in self._micro:
                micro.skip(chunk)
            self._unscored()
            return None
        raised = self._raised()
        micro = [(m, m.score(chunk)) for m in self._micro]
        nets = self._net_scores(max((s for _, s in micro), default=0.0), raised)
        scored = [(w.name, w.engine, nets[w], w.lag) for w in self._words]
        scored += [(m.name, m.engine, score, MICRO_LAG.get(m.name, DEFAULT_LAG))
                   for m, score in micro]
        self.last_scores = dict.fromkeys(self.model_names, 0.0)
        best: WakeDetection | None = None
        for name, engine, score, lag in scored:
            self.last_scores[name] = max(self.last_scores[name], score)
            self.engine_scores[name, engine] = score
            threshold = self.threshold(name, engine)
            self.diagnostics.observe(name, engine, score, threshold)
            if score < threshold or not self._may_fire(name, end_index):
                continue
            if best is None or score > best.score:
                best = WakeDetection(name, score, max(0, end_index - round(lag * RATE)), engine)
        if self._heads:
            best = self._seconded(nets, raised, end_index, best)
        if max(self.engine_scores.values(), default=0.0) >= LOOK:
            self._looked_at = end_index
        if best is not None:
            self._refractory_until[best.model] = (
                end_index + int(self.settings.refractory_seconds * RATE))
            self.diagnostics.fired(best.model)
            log.info("wake word %s (%s, score %.2f)", best.model, best.engine, best.score)
        return best

    def _net_scores(self, micro: float, raised: bool) -> dict[WakeWordScorer, float]:
        """The classifiers on openWakeWord's embeddings (the heads not while
        ``raised``: they may not vote then), openWakeWord's own each its best
        over the phases scored this step. ``micro``: microWakeWord's best
        score, which opens the look at other phases too."""
        if self._features is None:
            return {}
        nets = [*self._words, *(head for head, _ in self._heads if not raised)]
        embeddings = self._features.embeddings()
        scores = {net: net.score(embeddings) for net in nets}
        top = max([micro, *scores.values()])
        self._look_age = 0 if top >= LOOK else min(self._look_age + 1, LOOK_STEPS + 1)
        phased = [net for net in nets if net.phased]
        if phased and self._look_age <= LOOK_STEPS:
            for phase in self._phases:
                embeddings = self._features.embeddings(phase)
                for net in phased:
                    scores[net] = max(scores[net], net.raw(embeddings))
        return scores

    def _seconded(self, nets: dict[WakeWordScorer, float], raised: bool, end_index: int,
                  best: WakeDetection | None) -> WakeDetection | None:
        """The own heads' votes, each seconded by its word's stock scores of
        this step; none while the playback threshold is raised."""
        for head, vote in self._heads:
            if raised:  # playing, uncancelled: it may not vote, so it is not scored
                head.forget()
                vote.reset()  # nothing heard now may second or be seconded later
                self.engine_scores[head.name, SECONDED_HEAD] = 0.0
                continue
            score = nets[head]
            self.engine_scores[head.name, SECONDED_HEAD] = score
            self.diagnostics.observe(head.name, SECONDED_HEAD, score,
                                     self.threshold(head.name, SECONDED_HEAD))
            if self._warmup_left:
                vote.reset()
                continue
            second = max(s for (name, engine), s in self.engine_scores.items()
                         if name == head.name and engine != SECONDED_HEAD)
            if not vote.step(score, second):
                continue
            self.last_scores[head.name] = max(self.last_scores[head.name], vote.peak)
            # A stock engine's own detection goes first: its lag is measured.
            if best is None and self._may_fire(head.name, end_index):
                lag = vote.first_age * CHUNK + round(head.lag * RATE)
                best = WakeDetection(head.name, vote.peak, max(0, end_index - lag), SECONDED_HEAD)
        return best

    def _may_fire(self, model: str, end_index: int) -> bool:
        """Not warming up, and not within the model's refractory period."""
        return not self._warmup_left and end_index >= self._refractory_until.get(model, 0)

    def _unscored(self) -> None:
        """No scores this step: the next scored step starts every vote afresh."""
        self.last_scores = dict.fromkeys(self.model_names, 0.0)
        for word in self._words:
            word.forget()
        for scorer in [*self._words, *self._micro]:
            self.engine_scores[scorer.name, scorer.engine] = 0.0
            self.diagnostics.observe(scorer.name, scorer.engine, 0.0,
                                     self.threshold(scorer.name, scorer.engine))
        for head, vote in self._heads:
            head.forget()
            vote.reset()
            self.engine_scores[head.name, SECONDED_HEAD] = 0.0
            self.diagnostics.observe(head.name, SECONDED_HEAD, 0.0,
                                     self.threshold(head.name, SECONDED_HEAD))

    def _gate_open(self, chunk: np.ndarray) -> bool:
        """Whether the last ~2 s held a voice; always True without a gate."""
        if self._gate is None:
            return True
        if self._gate.any_speech(chunk):
            self._voice_quiet = 0
        else:
            self._voice_quiet = min(self._voice_quiet + CHUNK, self._gate_hold)
        return self._voice_quiet < self._gate_hold and (self._wanted is None or self._wanted())

    def _looking(self) -> bool:
        """Some engine scored LOOK within the last LOOK_STEPS steps."""
        return self._step_end - self._looked_at <= LOOK_STEPS * CHUNK
