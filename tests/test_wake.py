"""The wake-word detector on real synthesized speech and the real bundled models."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_agent.config import BUILTIN_WAKE_MODELS, WakeSettings
from edge_agent.errors import ModelError
from edge_agent.tools.voices import espeak, mix_snr, noise, piper, silence
from edge_agent.wake import (
    DEFAULT_LAG,
    WakeDetection,
    WakeDetector,
    bundled_models_dir,
    strip_wake_phrase,
)

RATE = 16000
PHRASES = {"hey_jarvis": "hey jarvis", "alexa": "alexa", "hey_mycroft": "hey mycroft",
           "hey_rhasspy": "hey rhasspy", "okay_nabu": "okay nabu"}


def feed(detector: WakeDetector, audio: np.ndarray, *, start: int = 0,
         frame: int = WakeDetector.FRAME_SAMPLES) -> list[WakeDetection]:
    """Every detection while ``audio`` streams in, its first sample at ``start``."""
    found = []
    for i in range(0, len(audio), frame):
        chunk = audio[i:i + frame]
        detection = detector.process(chunk, start + i + len(chunk))
        if detection is not None:
            found.append(detection)
    return found


def peak_score(detector: WakeDetector, audio: np.ndarray, model: str) -> float:
    peak = 0.0
    for i in range(0, len(audio), WakeDetector.FRAME_SAMPLES):
        chunk = audio[i:i + WakeDetector.FRAME_SAMPLES]
        detector.process(chunk, i + len(chunk))
        peak = max(peak, detector.last_scores[model])
    return peak


def spoken_end(audio: np.ndarray) -> int:
    """Index just after the last sample above 5% of the peak: where speech ends,
    not the synthesizer's trailing silence."""
    loud = np.nonzero(np.abs(audio.astype(np.int32)) > 0.05 * np.abs(audio).max())[0]
    return int(loud[-1]) + 1


@pytest.fixture(scope="module")
def all_models() -> WakeDetector:
    return WakeDetector(WakeSettings(models=list(BUILTIN_WAKE_MODELS)))


@pytest.fixture(scope="module")
def jarvis() -> WakeDetector:
    return WakeDetector(WakeSettings())


@pytest.mark.parametrize("model", BUILTIN_WAKE_MODELS)
def test_each_bundled_wake_word_is_detected(all_models: WakeDetector, model: str) -> None:
    all_models.reset()
    phrase = piper(PHRASES[model])
    found = feed(all_models, np.concatenate([silence(2.0), phrase, silence(1.0)]))
    assert [d.model for d in found] == [model]
    assert found[0].score >= 0.5


@pytest.mark.parametrize(("voice", "speed", "snr"), [
    ("en-us", 160, 20), ("en-us+f3", 175, 15), ("en-gb", 140, 20), ("en-us+m3", 160, 10)])
def test_hey_jarvis_across_voices_in_noise(jarvis: WakeDetector, voice: str, speed: int,
                                           snr: float) -> None:
    jarvis.reset()
    audio = np.concatenate([silence(2.0), espeak("hey jarvis", voice=voice, speed=speed),
                            silence(1.0)])
    found = feed(jarvis, mix_snr(audio, noise(5.0, seed=3), snr))
    assert [d.model for d in found] == ["hey_jarvis"]


def test_no_wake_on_ordinary_speech_and_noise(all_models: WakeDetector) -> None:
    sentences = [
        piper("the weather tomorrow will be sunny with a light breeze from the west"),
        piper("please remember to buy milk, eggs and bread on the way home"),
        espeak("jars of jam are on the shelf next to the travel guides", voice="en-gb"),
        espeak("he said hey to the driver and asked for directions", voice="en-us+f3"),
        espeak("a lexicon of nautical terms, okay, now we know boo", voice="en-us+m3"),
    ]
    audio = np.concatenate([silence(1.0)] + [np.concatenate([s, silence(0.5)])
                                             for s in sentences])
    all_models.reset()
    assert feed(all_models, audio) == []
    assert feed(all_models, noise(20.0, level=2000, seed=7)) == []
    assert feed(all_models, mix_snr(audio, noise(10.0, seed=5), 5)) == []


def test_end_index_lands_at_the_end_of_the_wake_phrase(jarvis: WakeDetector) -> None:
    """"hey jarvis what time is it" said without a pause: the utterance starts
    within ~0.25 s of where the wake phrase ends."""
    wake, command = piper("hey jarvis"), piper("what time is it")
    start = 123_456  # an arbitrary absolute clock
    lead = silence(1.6)
    audio = np.concatenate([lead, wake, command, silence(1.0)])
    jarvis.reset()
    found = feed(jarvis, audio, start=start)
    assert len(found) == 1
    phrase_end = start + len(lead) + spoken_end(wake)
    assert abs(found[0].end_index - phrase_end) <= 0.25 * RATE


def test_frames_of_any_size_give_the_same_detection(jarvis: WakeDetector) -> None:
    audio = np.concatenate([silence(2.0), piper("hey jarvis"), silence(1.0)])
    jarvis.reset()
    whole = feed(jarvis, audio)
    jarvis.reset()
    odd = feed(jarvis, audio, frame=1000)
    assert len(whole) == 1
    assert [(d.model, d.end_index) for d in odd] == [(d.model, d.end_index) for d in whole]
    assert odd[0].score == pytest.approx(whole[0].score, abs=1e-5)


def test_idle_gate_does_not_change_scores(jarvis: WakeDetector) -> None:
    """The gate skips the embedding net in silence but computes what it skipped
    when a voice starts, so detections are those of the ungated detector."""
    ungated = WakeDetector(WakeSettings(), gate=False)
    audio = np.concatenate([silence(3.0), espeak("hey jarvis", voice="en-us+f3"), silence(3.0),
                            piper("hey jarvis"), silence(1.0)])
    jarvis.reset()
    gated_found, plain_found = feed(jarvis, audio), feed(ungated, audio)
    assert len(plain_found) == 2
    assert [d.end_index for d in gated_found] == [d.end_index for d in plain_found]
    for g, p in zip(gated_found, plain_found, strict=True):
        assert g.score == pytest.approx(p.score, abs=1e-4)


def test_idle_gate_closes_in_a_quiet_room_and_opens_for_a_voice() -> None:
    """While nobody speaks the models do not run at all (scores read 0.0).
    openWakeWord's model here: our head can score ordinary speech 0.0 too."""
    gated = WakeDetector(WakeSettings(own_head=False))
    feed(gated, noise(3.0, level=20, seed=9))
    assert gated.last_scores == {"hey_jarvis": 0.0}
    ungated = WakeDetector(WakeSettings(own_head=False), gate=False)
    feed(ungated, noise(3.0, level=20, seed=9))
    assert ungated.last_scores["hey_jarvis"] > 0.0  # the models do give a score there
    feed(gated, piper("the weather tomorrow"))
    assert gated.last_scores["hey_jarvis"] > 0.0


def test_scores_match_openwakeword_model() -> None:
    """Our streaming front end computes exactly what openwakeword.Model does
    (once its randomly filled start-up window has scrolled out), at the one
    phase per step that it scores (wake.phases = 1)."""
    from openwakeword.model import Model

    models = bundled_models_dir()
    reference = Model(wakeword_models=[str(models / "hey_jarvis.tflite")],
                      inference_framework="tflite",
                      melspec_model_path=str(models / "melspectrogram.tflite"),
                      embedding_model_path=str(models / "embedding_model.tflite"))
    ours = WakeDetector(WakeSettings(own_head=False, seconded_head=False, phases=1),
                        gate=False)
    audio = mix_snr(np.concatenate([silence(3.0), espeak("hey jarvis", voice="en-gb"),
                                    piper("what time is it")]), noise(6.0, seed=1), 15)
    theirs, mine = [], []
    for i in range(0, len(audio) - 1279, 1280):
        chunk = audio[i:i + 1280]
        theirs.append(reference.predict(chunk)["hey_jarvis"])
        ours.process(chunk, i + 1280)
        mine.append(ours.last_scores["hey_jarvis"])
    settled = int(2.5 * RATE) // 1280
    assert max(mine[settled:]) > 0.5
    np.testing.assert_allclose(mine[settled:], theirs[settled:], atol=1e-4)


def test_no_false_wake_right_after_reset() -> None:
    """Detections are suppressed for warmup_seconds after a reset, even when
    the audio right after it scores high."""
    detector = WakeDetector(WakeSettings(warmup_seconds=1.5))
    cold = WakeDetector(WakeSettings(warmup_seconds=0.0))
    phrase = np.concatenate([silence(0.1), piper("hey jarvis"), silence(0.2)])
    assert len(phrase) < 1.5 * RATE
    for d in (detector, cold):
        feed(d, piper("the weather tomorrow will be sunny"))  # state to throw away
        d.reset()
    assert feed(detector, phrase) == []
    assert [d.model for d in feed(cold, phrase)] == ["hey_jarvis"]  # the test can fail
    detector.reset()
    assert feed(detector, mix_snr(piper("okay, what is the time"), noise(3.0), 10)) == []


def test_refractory_period_per_model() -> None:
    detector = WakeDetector(WakeSettings(refractory_seconds=3.0))
    phrase = piper("hey jarvis")
    quick_repeat = np.concatenate([silence(2.0), phrase, silence(0.5), phrase, silence(0.5)])
    assert len(feed(detector, quick_repeat)) == 1
    detector.reset()
    slow_repeat = np.concatenate([silence(2.0), phrase, silence(3.5), phrase, silence(0.5)])
    assert len(feed(detector, slow_repeat)) == 2


def test_stricter_threshold_while_playing() -> None:
    audio = mix_snr(np.concatenate([silence(2.0), espeak("hey jarvis", voice="en-gb"),
                                    silence(1.0)]), noise(4.0, seed=11), 10)
    # openWakeWord's model alone: it gives this take a middling peak.
    peak = peak_score(WakeDetector(WakeSettings(own_head=False, seconded_head=False)), audio,
                      "hey_jarvis")
    assert 0.3 <= peak < 0.999
    detector = WakeDetector(WakeSettings(threshold=0.3, own_head=False, seconded_head=False,
                                         playback_threshold=min(1.0, peak + 0.001)))
    detector.set_playing(True)
    assert detector.threshold("hey_jarvis") > peak
    assert feed(detector, audio) == []
    detector.set_playing(False)
    detector.reset()
    assert len(feed(detector, audio)) == 1


def test_converged_echo_cancellation_keeps_the_normal_threshold_while_playing() -> None:
    detector = WakeDetector(WakeSettings(threshold=0.5, playback_threshold=0.8))
    cancelling = [False]
    detector.echo_ready = lambda: cancelling[0]
    detector.set_playing(True)
    assert detector.threshold("hey_jarvis") == 0.8  # off or not converged: the fallback
    cancelling[0] = True
    assert detector.threshold("hey_jarvis") == 0.5
    cancelling[0] = False  # diverged: back to the fallback at once
    assert detector.threshold("hey_jarvis") == 0.8


def test_per_model_threshold_override() -> None:
    detector = WakeDetector(WakeSettings(models=["hey_jarvis", "alexa"], threshold=0.5,
                                         thresholds={"alexa": 0.9}))
    assert detector.threshold("hey_jarvis") == 0.5
    assert detector.threshold("alexa") == 0.9


def test_custom_model_path(tmp_path) -> None:
    custom = tmp_path / "my_word_v2.tflite"
    shutil.copy(bundled_models_dir() / "hey_jarvis.tflite", custom)
    detector = WakeDetector(WakeSettings(models=[str(custom)]))
    assert detector.model_names == ["my_word_v2"]
    found = feed(detector, np.concatenate([silence(2.0), piper("hey jarvis"), silence(1.0)]))
    assert [d.model for d in found] == ["my_word_v2"]


def _protobuf_field(number: int, value: int | str | bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            low, n = n & 0x7F, n >> 7
            out.append(low | (0x80 if n else 0))
            if not n:
                return bytes(out)

    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def tiny_onnx_classifier(windows: int = 16) -> bytes:
    """An ONNX model with a classifier's shape, [1, windows, 96] -> [1, 1, 1]:
    sigmoid(mean(embeddings)). Written as raw protobuf (field numbers from
    onnx.proto) because the onnx package is not a dependency."""
    f = _protobuf_field

    def tensor(name: str, dims: list[int]) -> bytes:
        shape = b"".join(f(1, f(1, d)) for d in dims)
        return f(1, name) + f(2, f(1, f(1, 1) + f(2, shape)))  # elem_type 1: float

    axes = f(1, "axes") + f(8, 1) + f(8, 2) + f(20, 7)  # type 7: INTS
    mean = f(1, "x") + f(2, "m") + f(4, "ReduceMean") + f(5, axes)
    sigmoid = f(1, "m") + f(2, "y") + f(4, "Sigmoid")
    graph = (f(1, mean) + f(1, sigmoid) + f(2, "g")
             + f(11, tensor("x", [1, windows, 96])) + f(12, tensor("y", [1, 1, 1])))
    return f(1, 8) + f(8, f(1, "") + f(2, 13)) + f(7, graph)  # IR 8, opset 13


def test_custom_onnx_model(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_onnx_classifier(windows=12))
    detector = WakeDetector(WakeSettings(models=[str(path)], threshold=0.0,
                                         warmup_seconds=0.5), gate=False)
    assert detector.model_names == ["tiny"]
    found = feed(detector, piper("hello there"))
    assert 0.0 < detector.last_scores["tiny"] < 1.0
    assert found and found[0].model == "tiny"
    assert found[0].end_index >= 0.5 * RATE - DEFAULT_LAG * RATE


def test_bad_models_raise_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        WakeDetector(WakeSettings(models=[str(tmp_path / "gone.tflite")]))
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"garbage\.tflite"):
        WakeDetector(WakeSettings(models=[str(garbage)]))
    features = tmp_path / "features.tflite"
    shutil.copy(bundled_models_dir() / "embedding_model.tflite", features)
    with pytest.raises(ModelError, match="not an openWakeWord classifier"):
        WakeDetector(WakeSettings(models=[str(features)]))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x08garbage")
    with pytest.raises(ModelError, match=r"broken\.onnx"):
        WakeDetector(WakeSettings(models=[str(broken)]))
    with pytest.raises(ModelError, match="neither a bundled wake word"):
        WakeDetector(WakeSettings(models=["hey_siri"]))


@pytest.mark.parametrize(("text", "expected"), [
    ("Hey Jarvis, what time is it?", "what time is it?"),
    ("hey jarvis what time is it", "what time is it"),
    ("Jarvis. What time is it?", "What time is it?"),
    ("A Jarvis set a timer", "set a timer"),
    ("what time is it", "what time is it"),
    ("Hey, what's up?", "Hey, what's up?"),
    ("Jarvisville is a town", "Jarvisville is a town"),
    ("OK Nabu, lights off", "lights off"),
    ("Nabu lights off", "lights off"),
    ("Alexa stop", "stop"),
    ("hey jarvis", ""),
])
def test_strip_wake_phrase(text: str, expected: str) -> None:
    assert strip_wake_phrase(text, ["hey_jarvis", "okay_nabu", "alexa"]) == expected


def test_strip_custom_wake_phrase() -> None:
    assert strip_wake_phrase("Hey computer, lights on", ["/x/hey_computer_v2.tflite"]) \
        == "lights on"
    assert strip_wake_phrase("lights on", []) == "lights on"


def test_loading_the_models_writes_nothing_to_stderr_in_another_format() -> None:
    # The tflite C library's "INFO: Created TensorFlow Lite XNNPACK delegate" line.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", "from edge_agent.config import WakeSettings\n"
         "from edge_agent.wake import WakeDetector\nWakeDetector(WakeSettings())"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
