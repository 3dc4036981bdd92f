"""libvosk through ctypes: the ten C calls VoskSTT makes, without the vosk
package's Python module.

That module imports requests, tqdm and srt at import time (model downloads and
subtitles, which the daemon never uses), so the daemon loads the library that
the vosk wheel ships and nothing else; those packages then need not be
installed at all (scripts/lock excludes them). The library is loaded on first
use, so a speaker without a Vosk model never maps its ~15 MB.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path

from edge_agent.errors import ModelError

_c_void_p = ctypes.c_void_p


@functools.cache
def library() -> ctypes.CDLL:
    """libvosk.so from the installed vosk wheel; ModelError if it is missing."""
    # find_spec locates the package without running its __init__.
    spec = importlib.util.find_spec("vosk")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = next((Path(p) / "libvosk.so" for p in locations
                 if (Path(p) / "libvosk.so").is_file()), None)
    if path is None:
        raise ModelError("the vosk package (libvosk.so) is not installed")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise ModelError(f"cannot load {path}: {exc}") from exc
    for name, restype, argtypes in (
        ("vosk_set_log_level", None, [ctypes.c_int]),
        ("vosk_model_new", _c_void_p, [ctypes.c_char_p]),
        ("vosk_model_free", None, [_c_void_p]),
        ("vosk_recognizer_new", _c_void_p, [_c_void_p, ctypes.c_float]),
        ("vosk_recognizer_new_grm", _c_void_p, [_c_void_p, ctypes.c_float, ctypes.c_char_p]),
        ("vosk_recognizer_accept_waveform", ctypes.c_int,
         [_c_void_p, ctypes.c_char_p, ctypes.c_int]),
        ("vosk_recognizer_result", ctypes.c_char_p, [_c_void_p]),
        ("vosk_recognizer_partial_result", ctypes.c_char_p, [_c_void_p]),
        ("vosk_recognizer_final_result", ctypes.c_char_p, [_c_void_p]),
        ("vosk_recognizer_free", None, [_c_void_p]),
    ):
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    # Kaldi logs every model component at level 0; our own log says what matters.
    lib.vosk_set_log_level(-1)
    return lib


class Model:
    """A loaded model directory, shared by any number of recognizers."""

    def __init__(self, path: Path) -> None:
        self._lib = library()
        self.handle = self._lib.vosk_model_new(str(path).encode())
        if not self.handle:
            raise ModelError(f"cannot load Vosk model {path}: libvosk refused it")

    def __del__(self) -> None:
        if getattr(self, "handle", None):
            self._lib.vosk_model_free(self.handle)
            self.handle = None


class Recognizer:
    """One utterance's decoder; holds its model alive while it exists."""

    def __init__(self, model: Model, sample_rate: int, grammar: str | None = None) -> None:
        self._lib = model._lib
        self._model = model
        if grammar is None:
            self.handle = self._lib.vosk_recognizer_new(model.handle, float(sample_rate))
        else:
            self.handle = self._lib.vosk_recognizer_new_grm(
                model.handle, float(sample_rate), grammar.encode())
        if not self.handle:
            raise ModelError("libvosk could not make a recognizer (a malformed grammar?)")

    def accept_waveform(self, pcm: bytes) -> bool:
        """Feed int16 PCM; True when Vosk found the end of a segment."""
        done = self._lib.vosk_recognizer_accept_waveform(self.handle, pcm, len(pcm))
        if done < 0:
            raise ModelError("libvosk failed to decode the audio")
        return bool(done)

    def result(self) -> str:
        return self._lib.vosk_recognizer_result(self.handle).decode()

    def partial_result(self) -> str:
        return self._lib.vosk_recognizer_partial_result(self.handle).decode()

    def final_result(self) -> str:
        return self._lib.vosk_recognizer_final_result(self.handle).decode()

    def __del__(self) -> None:
        if getattr(self, "handle", None):
            self._lib.vosk_recognizer_free(self.handle)
            self.handle = None
