"""Vosk speech recognition on the device: the offline half of speech-to-text.

The model is loaded once (seconds, hundreds of MB); each utterance gets its own
cheap recognizer. Recognition is CPU-bound, so ``transcribe`` runs it in
a worker thread and ``VoskStream.feed`` must be called from one.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
from pathlib import Path

import numpy as np

from edge_agent.errors import ModelError
from edge_agent.offline import _libvosk

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Tokens Vosk emits for out-of-vocabulary speech. Dropped in free recognition
# (noise, not words); kept with a grammar, where "[unk]" means "something the
# grammar does not cover was said", so it cannot pass for a command.
_UNKNOWN = re.compile(r"\[unk\]|<unk>")


def _clean(text: str, *, keep_unknown: bool = False) -> str:
    if not keep_unknown:
        text = _UNKNOWN.sub(" ", text)
    return " ".join(text.split())


def _pcm(audio: np.ndarray) -> bytes:
    return np.asarray(audio, dtype=np.int16).tobytes()


class VoskSTT:
    """Offline speech-to-text. ``grammar`` restricts recognition to a phrase
    list (command vocabulary, e.g. ``edge_agent.intents.vocabulary()``): faster
    and far more accurate for commands; include "[unk]" so other speech shows as
    "[unk]" rather than as the nearest command."""

    name = "vosk"

    def __init__(self, model_dir: Path | str, *, grammar: list[str] | None = None) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ModelError(f"Vosk model directory {self.model_dir} does not exist; "
                             "run scripts/fetch-models or set offline.vosk_model")
        self._model = _libvosk.Model(self.model_dir)
        self.grammar = list(grammar) if grammar else None
        log.info("Vosk model loaded from %s%s", self.model_dir,
                 f" (grammar of {len(self.grammar)} phrases)" if self.grammar else "")

    def with_grammar(self, grammar: list[str] | None) -> VoskSTT:
        """The same loaded model restricted to a phrase list: no second load."""
        twin = copy.copy(self)
        twin.grammar = list(grammar) if grammar else None
        return twin

    def _recognizer(self) -> _libvosk.Recognizer:
        if self.grammar is None:
            return _libvosk.Recognizer(self._model, SAMPLE_RATE)
        # ensure_ascii=False: Vosk looks words up by their UTF-8 spelling, not \u escapes.
        grammar = json.dumps(self.grammar, ensure_ascii=False)
        return _libvosk.Recognizer(self._model, SAMPLE_RATE, grammar)

    def transcribe_blocking(self, audio: np.ndarray) -> str:
        """The whole utterance at once (16 kHz mono int16). CPU-bound."""
        recognizer = self._recognizer()
        recognizer.accept_waveform(_pcm(audio))
        text = json.loads(recognizer.final_result()).get("text", "")
        return _clean(text, keep_unknown=self.grammar is not None)

    async def transcribe(self, audio: np.ndarray) -> str:
        return await asyncio.to_thread(self.transcribe_blocking, audio)

    def stream(self) -> VoskStream:
        """A recognizer fed live while the user speaks ("parallel" mode)."""
        return VoskStream(self._recognizer(), keep_unknown=self.grammar is not None)


class VoskStream:
    """Live recognition of one utterance. ``feed`` is CPU-bound: call it from a
    worker thread, and from one thread at a time."""

    def __init__(self, recognizer: _libvosk.Recognizer, *, keep_unknown: bool = False) -> None:
        self._recognizer = recognizer
        self._keep_unknown = keep_unknown
        self._segments: list[str] = []  # finished segments (Vosk endpoints inside the turn)
        self._partial = ""
        self._final: str | None = None

    def _clean(self, text: str) -> str:
        return _clean(text, keep_unknown=self._keep_unknown)

    def _text(self, current: str) -> str:
        return " ".join(s for s in [*self._segments, current] if s)

    def feed(self, frame: np.ndarray) -> str | None:
        """Add audio; return the new partial transcript when it changed, else None."""
        if self._final is not None:
            raise RuntimeError("VoskStream.feed after final()")
        if self._recognizer.accept_waveform(_pcm(frame)):
            segment = self._clean(json.loads(self._recognizer.result()).get("text", ""))
            if segment:
                self._segments.append(segment)
            current = ""
        else:
            current = self._clean(json.loads(self._recognizer.partial_result()).get("partial", ""))
        text = self._text(current)
        if text == self._partial:
            return None
        self._partial = text
        return text

    @property
    def partial(self) -> str:
        return self._partial

    def final(self) -> str:
        """The transcript of everything fed; the stream is finished after this."""
        if self._final is None:
            last = self._clean(json.loads(self._recognizer.final_result()).get("text", ""))
            self._final = self._text(last)
        return self._final
