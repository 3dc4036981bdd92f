"""Wake word and end-of-turn benchmark on synthesized speech.

Figures: every engine and their fusion by voice family (Piper, espeak-ng and
the CMU voices of flite and festival) in five rooms, with false wakes on read
speech (edge_agent/tools/wake_eval.py); the shipped detector's false-reject
rate of "hey jarvis" over Piper and espeak-ng voices,
speeds, pitches and noise levels; false accepts per hour of all five bundled
models on ordinary speech, confusable phrases and noise; detection delay and
``end_index`` error after the end of the spoken wake phrase; CPU seconds per
second of idle audio for our detector (gated and not), pyopen-wakeword's
engine and openwakeword.Model on the same audio; end-of-turn delay.

    python -m edge_agent.bench.wake [--quick]

The speech is synthetic (no recordings on this machine): real voices differ,
so treat the rates as a regression baseline, not a field figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edge_agent.config import BUILTIN_WAKE_MODELS, TurnSettings, WakeSettings
from edge_agent.tools import wake_eval
from edge_agent.tools.texts import docstring_sentences
from edge_agent.tools.voices import RATE, espeak, mix_snr, noise, piper, silence
from edge_agent.vad import EndOfTurnDetector, Outcome
from edge_agent.wake import WakeDetector, bundled_models_dir

FRAME = WakeDetector.FRAME_SAMPLES
PHRASES = {"hey_jarvis": "hey jarvis", "alexa": "alexa", "hey_mycroft": "hey mycroft",
           "hey_rhasspy": "hey rhasspy", "okay_nabu": "okay nabu"}
ESPEAK_VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m3", "en-gb-scotland", "en-gb-x-rp",
                 "en-029", "en-us-nyc", "en-us+f2", "en-gb+f4", "en-us+Andrea", "en-gb+m7"]
SNRS = [None, 20.0, 10.0, 5.0]
THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
CONFUSABLE = ["jarvis", "hey travis", "hey charles", "harvest", "a jar of this", "hey service",
              "alex", "elixir", "lexus", "my croft", "microsoft", "hey rhapsody", "raspberry",
              "okay now boo", "ok, nah, boo", "hey, nobody", "hey, how are you", "jars and vases",
              "hey there, jar vis", "the harvest is late"]
COMMANDS = ["what time is it", "set a timer for ten minutes", "turn the volume down",
            "what is the weather like tomorrow", "stop", "play some music in the kitchen",
            "how long is left on my timer", "tell me a joke"]


def spoken_span(audio: np.ndarray) -> tuple[int, int]:
    """First and one-past-last sample above 5% of the peak: the speech itself,
    without the synthesizer's leading and trailing silence."""
    loud = np.nonzero(np.abs(audio.astype(np.int32)) > 0.05 * np.abs(audio).max())[0]
    return int(loud[0]), int(loud[-1]) + 1


def background(kind: str, seconds: float, seed: int) -> np.ndarray:
    if kind == "white":
        return noise(seconds, level=1000, seed=seed)
    # Babble: several voices talking at once, the hardest background for a VAD gate.
    voices = [espeak(s, voice=v) for s, v in zip(sentences()[seed % 50:seed % 50 + 4],
                                                 ESPEAK_VOICES[::3], strict=False)]
    out = np.zeros(int(seconds * RATE), dtype=np.float64)
    for v in voices:
        out += np.resize(v, out.shape)
    return np.clip(out, -32768, 32767).astype(np.int16)


def positives(quick: bool) -> Iterator[tuple[str, str, np.ndarray]]:
    """(label, condition, phrase audio) for "hey jarvis": every take clean and
    in white noise and in babble at 20, 10 and 5 dB (quick: one condition each)."""
    takes: list[tuple[str, Callable[[], np.ndarray]]] = [
        (f"piper@{s}", lambda s=s: piper("hey jarvis", length_scale=s))
        for s in (0.8, 0.9, 1.0, 1.1, 1.25)]
    for voice, speed, pitch in itertools.product(ESPEAK_VOICES, (130, 165, 200), (35, 65)):
        takes.append((f"espeak:{voice}@{speed}/{pitch}",
                      lambda v=voice, s=speed, p=pitch: espeak("hey jarvis", voice=v, speed=s,
                                                              pitch=p)))
    conditions = ["clean"] + [f"{kind} {snr:g}dB" for kind in ("white", "babble")
                              for snr in SNRS if snr is not None]
    if quick:
        takes = takes[::4]
    for i, (label, make) in enumerate(takes):
        for condition in conditions if not quick else [conditions[i % len(conditions)]]:
            yield label, condition, make()


def _positive_clip(phrase: np.ndarray, condition: str, i: int) -> tuple[np.ndarray, int]:
    """The phrase after 2 s of lead, followed by a command without a pause, in
    the condition's noise; and where the spoken phrase ends."""
    lead = silence(2.0)
    command = piper(COMMANDS[i % len(COMMANDS)])
    clip = np.concatenate([lead, phrase, command, silence(1.0)])
    if condition != "clean":
        kind, snr = condition.split()
        bg = background(kind, len(clip) / RATE, seed=i)
        # The SNR is set on the phrase alone so every condition means the same.
        scale = np.sqrt(np.mean(phrase.astype(float) ** 2)
                        / (np.mean(bg.astype(float) ** 2) * 10 ** (float(snr[:-2]) / 10)))
        clip = np.clip(clip + bg * scale, -32768, 32767).astype(np.int16)
    return clip, len(lead) + spoken_span(phrase)[1]


def _scores(detector: WakeDetector, audio: np.ndarray) -> tuple[np.ndarray, list]:
    """Per-frame scores (frames x models) and the detector's own detections
    as (frame number, detection)."""
    series = np.zeros((len(audio) // FRAME, len(detector.model_names)), dtype=np.float32)
    found = []
    for k in range(len(series)):
        detection = detector.process(audio[k * FRAME:(k + 1) * FRAME], (k + 1) * FRAME)
        series[k] = [detector.last_scores[m] for m in detector.model_names]
        if detection is not None:
            found.append((k, detection))
    return series, found


def wake_positive_figures(quick: bool) -> dict:
    """At the configured threshold (0.5) from the detector's own decisions; at
    other thresholds from each take's peak score."""
    detector = WakeDetector(WakeSettings())
    by_condition, by_engine = {}, {}
    missed: list[str] = []
    peaks, delays, end_errors = [], [], []
    for i, (label, condition, phrase) in enumerate(positives(quick)):
        clip, phrase_end = _positive_clip(phrase, condition, i)
        detector.reset()
        # A detection more than 1 s after the phrase is not a response to it.
        window = clip[: (phrase_end + RATE) // FRAME * FRAME]
        series, found = _scores(detector, window)
        peaks.append(float(series[int(2.0 * RATE) // FRAME:, 0].max()))
        tallies = [by_condition.setdefault(condition, [0, 0]),
                   by_engine.setdefault(label.split("@")[0].split(":")[0], [0, 0])]
        for tally in tallies:
            tally[1] += 1
        if not found:
            missed.append(f"{label} {condition}")
            for tally in tallies:
                tally[0] += 1
            continue
        k, detection = found[0]
        delays.append(((k + 1) * FRAME - phrase_end) / RATE)
        end_errors.append((detection.end_index - phrase_end) / RATE)
    total = len(peaks)
    return {
        "positives": total,
        "threshold": detector.settings.threshold,
        "false_reject_rate": round(len(missed) / total, 4),
        "false_reject_rate_by_condition": {c: round(m / n, 3)
                                           for c, (m, n) in by_condition.items()},
        "false_reject_rate_by_engine": {e: round(m / n, 3) for e, (m, n) in by_engine.items()},
        "false_reject_rate_at_threshold": {
            f"{t:g}": round(float(np.mean(np.asarray(peaks) < t)), 4) for t in THRESHOLDS},
        "missed_examples": missed[:12],
        "detection_delay_s": _spread(delays),
        "end_index_error_s": _spread(end_errors),
        "end_index_within_0.25s": round(float(np.mean(np.abs(end_errors) <= 0.25)), 3),
    }


def other_models_figures(quick: bool) -> dict:
    """False rejects and detection lag of every bundled model on clean phrases."""
    detector = WakeDetector(WakeSettings(models=list(BUILTIN_WAKE_MODELS)))
    voices = ESPEAK_VOICES[: 4 if quick else len(ESPEAK_VOICES)]
    out = {}
    for model, text in PHRASES.items():
        takes = [piper(text, length_scale=s) for s in (0.9, 1.0, 1.15)]
        takes += [espeak(text, voice=v, speed=s) for v in voices for s in (140, 180)]
        lags = []
        for phrase in takes:
            detector.reset()
            clip = np.concatenate([silence(2.0), phrase, silence(1.5)])
            end = 2 * RATE + spoken_span(phrase)[1]
            for start in range(0, len(clip) - FRAME + 1, FRAME):
                found = detector.process(clip[start:start + FRAME], start + FRAME)
                if found and found.model == model:
                    lags.append((start + FRAME - end) / RATE)
                    break
        out[model] = {"utterances": len(takes),
                      "false_reject_rate": round(1 - len(lags) / len(takes), 3),
                      "lag_s": _spread(lags)}
    return out


EVAL_SENTENCE_MODULES = ("argparse", "asyncio", "collections", "email.message", "http.client",
                         "logging", "pathlib", "statistics", "subprocess", "textwrap",
                         "threading", "unittest", "urllib.request")


def sentences(modules: tuple[str, ...] = EVAL_SENTENCE_MODULES) -> list[str]:
    """Ordinary English sentences: the docstrings of standard-library modules."""
    return docstring_sentences(modules)


def negative_segments(minutes: float) -> list[tuple[str, np.ndarray]]:
    """(category, audio) pieces of ~``minutes`` of audio without a wake word:
    confusable phrases, ordinary speech (Piper and espeak-ng, a quarter of it
    in noise) and plain noise."""
    target = int(minutes * 60 * RATE)
    segments: list[tuple[str, np.ndarray]] = []
    for i, text in enumerate(CONFUSABLE * 2):
        clip = piper(text) if i % 2 else espeak(text, voice=ESPEAK_VOICES[i % 12])
        segments.append(("confusable", np.concatenate([clip, silence(0.5)])))
    n = sum(len(a) for _, a in segments)
    for i, text in enumerate(sentences()):
        if n >= target * 0.8:
            break
        if i % 5 == 0:
            clip = piper(text)
        else:
            clip = espeak(text, voice=ESPEAK_VOICES[i % len(ESPEAK_VOICES)],
                          speed=140 + 10 * (i % 6), pitch=30 + 8 * (i % 6))
        if i % 4 == 3:
            clip = mix_snr(clip, noise(2.0, level=1000, seed=i), 10)
        clip = np.concatenate([clip, silence(0.3 + 0.1 * (i % 5))])
        segments.append(("speech", clip))
        n += len(clip)
    rest = max(target - n, 0) / RATE
    for k, level in enumerate((30, 300, 3000)):
        segments.append(("noise", noise(rest / 3, level=level, seed=k)))
    return segments


def false_accept_figures(quick: bool) -> dict:
    """All five models over one continuous stream; each detection is charged
    to the category of the segment it fell in."""
    minutes = 3.0 if quick else 32.0
    segments = negative_segments(minutes)
    stream = np.concatenate([a for _, a in segments])
    owner = np.concatenate([np.full(len(a), c) for c, a in segments])
    detector = WakeDetector(WakeSettings(models=list(BUILTIN_WAKE_MODELS)))
    series, found = _scores(detector, stream)
    hours = len(stream) / RATE / 3600
    categories = {c: sum(len(a) for k, a in segments if k == c) / RATE / 60
                  for c in ("speech", "confusable", "noise")}
    by_category = {c: dict.fromkeys(BUILTIN_WAKE_MODELS, 0) for c in categories}
    for k, detection in found:
        by_category[str(owner[k * FRAME])][detection.model] += 1
    ordinary_hours = (categories["speech"] + categories["noise"]) / 60
    ordinary = series.copy()
    ordinary[owner[::FRAME][: len(series)] == "confusable"] = 0.0
    sweep = {f"{t:g}": round(_crossings(ordinary, t) / ordinary_hours, 2) for t in THRESHOLDS}
    return {
        "negative_minutes": round(hours * 60, 1),
        "minutes_by_category": {c: round(m, 1) for c, m in categories.items()},
        "false_accepts_by_category": by_category,
        "false_accepts_per_hour_ordinary_audio": {
            m: round((by_category["speech"][m] + by_category["noise"][m]) / ordinary_hours, 2)
            for m in BUILTIN_WAKE_MODELS},
        "false_accepts_per_hour_all": {
            m: round(sum(c[m] for c in by_category.values()) / hours, 2)
            for m in BUILTIN_WAKE_MODELS},
        "ordinary_audio_all_models_per_hour_at_threshold": sweep,
    }


def _crossings(series: np.ndarray, threshold: float) -> int:
    """Detections of all models at ``threshold`` with the default 2 s
    refractory period, counted from per-frame scores."""
    refractory = int(WakeSettings().refractory_seconds * RATE) // FRAME
    count = 0
    for column in series.T:
        ready = 0
        for k in np.nonzero(column >= threshold)[0]:
            if k >= ready:
                count += 1
                ready = k + refractory
    return count


ENGINES: dict[str, Callable[[], Callable[[np.ndarray], None]]] = {}
"""Filled below: name -> factory of a function that feeds audio to the engine."""


def cpu_figures(quick: bool) -> dict:
    """CPU seconds per second of audio for the idle loop, every engine on the
    same audio: a quiet room, and a room with a television talking.

    Each engine runs in a process of its own: pyopen-wakeword loads its own
    TensorFlow Lite with RTLD_GLOBAL, and a tflite_runtime interpreter created
    after it in the same process crashes (stack smashing).
    """
    seconds = 20.0 if quick else 60.0
    quiet = noise(seconds, level=20, seed=9)
    talk = np.concatenate([a for c, a in negative_segments(seconds / 60 + 3) if c == "speech"])
    rooms = {"quiet_room": quiet, "tv_talking": np.resize(talk, quiet.shape)}
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for room, audio in rooms.items():
            path = Path(tmp) / f"{room}.npy"
            np.save(path, audio)
            for engine in ENGINES:
                done = subprocess.run(
                    [sys.executable, "-m", "edge_agent.bench.wake", "--cpu", engine, str(path)],
                    capture_output=True, text=True, check=True)
                out.setdefault(room, {})[engine] = float(done.stdout.split()[-1])
            base = out[room]["pyopen_wakeword"]
            out[room]["ours_gated_vs_pyopen"] = round(out[room]["ours_gated"] / base, 3)
            out[room]["ours_ungated_vs_pyopen"] = round(out[room]["ours_ungated"] / base, 3)
    out["note"] = ("CPU seconds per audio second for hey_jarvis; ours_* is the shipped "
                   "detector (openWakeWord and microWakeWord fused, and the seconded head), "
                   "ours_gated_<engine> one engine alone (the head rides on openWakeWord's "
                   "features, so it runs with openwakeword); x86-64 shared machine")
    return out


def _cpu_of(engine: str, path: str) -> float:
    """CPU seconds per audio second of one engine on the audio saved at ``path``."""
    audio = np.load(path)
    feed = ENGINES[engine]()
    feed(audio[:FRAME * 20])  # warm up caches and allocations
    began = time.process_time()
    feed(audio)
    return round((time.process_time() - began) / (len(audio) / RATE), 5)


def _ours(gate: bool, engines: tuple[str, ...] = ("openwakeword", "microwakeword")
          ) -> Callable[[np.ndarray], None]:
    detector = WakeDetector(WakeSettings(engines=list(engines)), gate=gate)

    def feed(audio: np.ndarray) -> None:
        for start in range(0, len(audio) - FRAME + 1, FRAME):
            detector.process(audio[start:start + FRAME], start + FRAME)
    return feed


def _pyopen() -> Callable[[np.ndarray], None]:
    from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

    features = OpenWakeWordFeatures.from_builtin()
    model = OpenWakeWord.from_builtin(Model.HEY_JARVIS)

    def feed(audio: np.ndarray) -> None:
        for start in range(0, len(audio) - FRAME + 1, FRAME):
            for embeddings in features.process_streaming(audio[start:start + FRAME].tobytes()):
                for _ in model.process_streaming(embeddings):
                    pass
    return feed


def _openwakeword() -> Callable[[np.ndarray], None]:
    from openwakeword.model import Model

    models = bundled_models_dir()
    model = Model(wakeword_models=[str(models / "hey_jarvis.tflite")],
                  inference_framework="tflite",
                  melspec_model_path=str(models / "melspectrogram.tflite"),
                  embedding_model_path=str(models / "embedding_model.tflite"))

    def feed(audio: np.ndarray) -> None:
        for start in range(0, len(audio) - FRAME + 1, FRAME):
            model.predict(audio[start:start + FRAME])
    return feed


ENGINES.update({
    "ours_gated": lambda: _ours(gate=True),
    "ours_ungated": lambda: _ours(gate=False),
    "ours_gated_openwakeword": lambda: _ours(gate=True, engines=("openwakeword",)),
    "ours_gated_microwakeword": lambda: _ours(gate=True, engines=("microwakeword",)),
    "pyopen_wakeword": _pyopen,
    "openwakeword_model": _openwakeword,
})


def end_of_turn_figures(quick: bool) -> dict:
    """Delay from the end of speech to the end-of-turn decision, and how often
    the utterance's end cut into the speech."""
    settings = TurnSettings()
    voices: list[Callable[[str], np.ndarray]] = [piper] + [
        lambda t, v=v: espeak(t, voice=v) for v in ESPEAK_VOICES[: 2 if quick else 6]]
    delays, clipped, missed, n = [], 0, 0, 0
    for (i, text), speak in itertools.product(enumerate(COMMANDS), voices):
        for snr in (None, 10.0) if not quick else (None,):
            speech = speak(text)
            lead = silence(0.3)
            audio = np.concatenate([lead, speech, silence(3.0)])
            if snr is not None:
                audio = mix_snr(audio, noise(5.0, level=1000, seed=i), snr)
            speech_end = len(lead) + spoken_span(speech)[1]
            detector = EndOfTurnDetector(settings, start_index=0)
            n += 1
            for start in range(0, len(audio) - 479, 480):
                bounds = detector.process(audio[start:start + 480], start + 480)
                if bounds is not None:
                    break
            if bounds is None or bounds.outcome is not Outcome.SPEECH_END:
                missed += 1
                continue
            delays.append((start + 480 - speech_end) / RATE)
            clipped += bounds.end_index < speech_end
    return {"turns": n, "end_silence_s": settings.end_silence,
            "end_of_turn_delay_s": _spread(delays),
            "clipped_rate": round(clipped / n, 3), "not_ended_by_speech_end": missed}


def _spread(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    return {"n": len(v), "median": round(float(np.median(v)), 3),
            "p10": round(float(np.percentile(v, 10)), 3),
            "p90": round(float(np.percentile(v, 90)), 3),
            "min": round(float(v.min()), 3), "max": round(float(v.max()), 3)}


def run(quick: bool = False) -> dict:
    began = time.monotonic()
    result = {
        "mode": "quick (fewer positives, 3 min of negatives)" if quick else "full",
        # Every engine and their fusion by voice family and room, with false
        # wakes on read speech (edge_agent/tools/wake_eval.py).
        "by_family": wake_eval.run(quick),
        # The shipped default (both engines) on the older validation takes.
        "wake_hey_jarvis": wake_positive_figures(quick),
        "wake_all_models": other_models_figures(quick),
        "false_accepts": false_accept_figures(quick),
        "idle_cpu_per_audio_second": cpu_figures(quick),
        "end_of_turn": end_of_turn_figures(quick),
    }
    result["wall_seconds"] = round(time.monotonic() - began, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset, for a smoke run")
    parser.add_argument("--cpu", nargs=2, metavar=("ENGINE", "AUDIO_NPY"),
                        help="internal: print one engine's CPU figure (run in its own process)")
    args = parser.parse_args()
    if args.cpu:
        print(_cpu_of(*args.cpu))
        return
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
