"""microWakeWord beside openWakeWord: both engines, their fusion, and input
that real microphones deliver (exact zeros, DC, clipping, very low and very
high levels), on real synthesized speech and the real packaged models."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_agent.config import WakeSettings, parse_settings
from edge_agent.errors import ConfigError, ModelError
from edge_agent.tools.voices import espeak, noise, piper, silence
from edge_agent.wake import WakeDetector
from edge_agent.wake._diagnostics import MARGIN
from edge_agent.wake._micro import BACKLOG, MicroScorer, bundled_micro_dir, calibrated
from tests.test_wake import feed, spoken_end

RATE = 16000
OWW, MWW = "openwakeword", "microwakeword"


def take(lead: float = 2.0) -> np.ndarray:
    """"hey jarvis, what time is it" (Piper) with ``lead`` s of exact zeros before.
    Without noise: Piper draws random noise per synthesis and CI starts with an
    empty cache, so a noisy take (and the scores compared here) differed by machine."""
    return np.concatenate([silence(lead), piper("hey jarvis, what time is it", noise_scale=0.0,
                                                noise_w_scale=0.0), silence(1.0)])


def detector(*engines: str, **settings) -> WakeDetector:
    """The engines alone (no seconded head), unless ``settings`` say otherwise."""
    return WakeDetector(WakeSettings(engines=list(engines), warmup_seconds=0.5,
                                     **{"seconded_head": False, **settings}))


def test_hey_jarvis_is_scored_by_both_engines_by_default() -> None:
    jarvis = WakeDetector(WakeSettings())
    assert jarvis.engines == [MWW, OWW, "own_head"], "and the seconded head"
    only_oww = WakeDetector(WakeSettings(models=["hey_rhasspy"]))
    assert only_oww.engines == [OWW], "microWakeWord ships no hey_rhasspy"


@pytest.mark.parametrize("engine", [OWW, MWW])
def test_each_engine_alone_hears_hey_jarvis(engine: str) -> None:
    found = feed(detector(engine), take())
    assert [(d.model, d.engine) for d in found] == [("hey_jarvis", engine)]
    assert found[0].score >= 0.5


def _level(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    scale = 32767 * 10 ** (peak_dbfs / 20) / np.abs(audio.astype(float)).max()
    return np.round(audio * scale).astype(np.int16)


CONDITIONS = {
    # A noise-gated or USB microphone delivers exact zeros around speech.
    "digital silence": lambda a: a,
    "dc offset": lambda a: np.clip(a.astype(float) + 6000, -32768, 32767).astype(np.int16),
    "clipping": lambda a: np.clip(a.astype(float) * 4, -32768, 32767).astype(np.int16),
    "speech at -40 dBFS": lambda a: _level(a, -40.0),
    "speech at -6 dBFS": lambda a: _level(a, -6.0),
    "noise floor -64 dBFS": lambda a: np.clip(a + noise(len(a) / RATE, level=20, seed=4),
                                               -32768, 32767).astype(np.int16),
}


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("engine", [OWW, MWW])
def test_no_engine_is_blinded_by_the_input(engine: str, condition: str) -> None:
    audio = CONDITIONS[condition](take())
    found = feed(detector(engine), audio)
    assert [d.engine for d in found] == [engine], condition


def test_either_engine_wakes_the_fused_detector() -> None:
    """OR fusion with per-engine thresholds: an engine held at 1.0 never fires,
    and the word is still heard through the other."""
    only_micro = WakeSettings(thresholds={"hey_jarvis:openwakeword": 1.0}, warmup_seconds=0.5,
                              seconded_head=False)
    assert [d.engine for d in feed(WakeDetector(only_micro), take())] == [MWW]
    only_oww = WakeSettings(thresholds={"hey_jarvis:microwakeword": 1.0}, warmup_seconds=0.5,
                            seconded_head=False)
    assert [d.engine for d in feed(WakeDetector(only_oww), take())] == [OWW]


def test_a_take_only_one_engine_hears_is_heard_fused() -> None:
    """espeak-ng's default voice is outside microWakeWord's training: it
    scores near zero there, openWakeWord hears it, so the fusion does."""
    audio = np.concatenate([silence(2.0), espeak("hey jarvis", voice="en-us"), silence(1.0)])
    assert feed(detector(MWW), audio) == []
    assert [d.engine for d in feed(WakeDetector(WakeSettings(warmup_seconds=0.5)), audio)] \
        == [OWW]


def test_one_detection_per_phrase_when_both_engines_pass() -> None:
    found = feed(WakeDetector(WakeSettings(warmup_seconds=0.5)), take())
    assert len(found) == 1


def test_micro_end_index_lands_at_the_end_of_the_phrase() -> None:
    wake, command = piper("hey jarvis"), piper("what time is it")
    lead = silence(1.6)
    found = feed(detector(MWW), np.concatenate([lead, wake, command, silence(1.0)]))
    assert len(found) == 1
    assert abs(found[0].end_index - (len(lead) + spoken_end(wake))) <= 0.25 * RATE


def test_the_gate_replays_enough_for_micro_to_hear_the_phrase() -> None:
    """Gated, microWakeWord runs only once a voice opens the gate, from the
    backlog: it scores as it does ungated, and not at all in a quiet room."""
    audio = take(lead=4.0)
    gated, ungated = detector(MWW), WakeDetector(
        WakeSettings(engines=[MWW], warmup_seconds=0.5), gate=False)
    g, u = feed(gated, audio), feed(ungated, audio)
    assert len(g) == len(u) == 1
    assert g[0].score == pytest.approx(u[0].score, abs=0.05)
    assert abs(g[0].end_index - u[0].end_index) <= 2 * 1280
    quiet = detector(MWW)
    feed(quiet, noise(3.0, level=20, seed=2))
    assert quiet.last_scores["hey_jarvis"] == 0.0
    assert quiet._micro[0]._backlog_samples <= BACKLOG + 1280


def test_calibration_puts_each_cutoff_at_one_half() -> None:
    assert calibrated(0.97, 0.97) == pytest.approx(0.5)
    assert calibrated(0.0, 0.97) == 0.0
    assert calibrated(1.0, 0.97) == pytest.approx(1.0)
    assert calibrated(0.485, 0.97) == pytest.approx(0.25)


def test_a_custom_micro_model_loads_by_its_json(tmp_path) -> None:
    for suffix in (".json", ".tflite"):
        shutil.copy(bundled_micro_dir() / f"hey_jarvis{suffix}", tmp_path / f"my_word{suffix}")
    spec = (tmp_path / "my_word.json").read_text().replace("hey_jarvis.tflite", "my_word.tflite")
    (tmp_path / "my_word.json").write_text(spec)
    custom = WakeDetector(WakeSettings(models=[str(tmp_path / "my_word.json")],
                                       warmup_seconds=0.5))
    assert custom.model_names == ["my_word"]
    assert [(d.model, d.engine) for d in feed(custom, take())] == [("my_word", MWW)]


def test_a_broken_micro_model_is_a_model_error(tmp_path) -> None:
    (tmp_path / "bad.json").write_text('{"model": "missing.tflite"}')
    with pytest.raises(ModelError, match=r"bad\.json"):
        MicroScorer(tmp_path / "bad.json")


def test_engines_load_in_either_order_in_one_process() -> None:
    """pymicro-wakeword's own TensorFlow Lite loaded before tflite_runtime
    crashed the process at the first openWakeWord interpreter."""
    code = ("from edge_agent.wake._micro import MicroScorer, bundled_micro_dir\n"
            "MicroScorer(bundled_micro_dir() / 'hey_jarvis.json')\n"
            "from edge_agent.config import WakeSettings\n"
            "from edge_agent.wake import WakeDetector\n"
            "WakeDetector(WakeSettings(engines=['openwakeword']))\n"
            "print('loaded')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded" in result.stdout


def test_near_misses_and_peaks_show_how_close_it_came() -> None:
    """A take that peaks just under a raised threshold is a near miss of
    that engine; the peak is reported per engine."""
    probe = detector(OWW)
    feed(probe, take())
    peak = probe.diagnostics.peaks()["hey_jarvis"][OWW]
    strict = detector(OWW, threshold=min(1.0, peak + MARGIN / 2))
    assert feed(strict, np.concatenate([take(), silence(2.0)])) == []
    misses = strict.diagnostics.near_misses
    assert [(m.model, m.engine) for m in misses] == [("hey_jarvis", OWW)]
    assert misses[0].score == pytest.approx(peak, abs=1e-3)
    assert strict.diagnostics.peaks()["hey_jarvis"][OWW] == pytest.approx(peak, abs=1e-3)


def test_a_detection_is_no_near_miss() -> None:
    jarvis = WakeDetector(WakeSettings(warmup_seconds=0.5))
    assert feed(jarvis, np.concatenate([take(), silence(2.0)]))
    assert list(jarvis.diagnostics.near_misses) == []


def test_config_checks_engines_and_engine_thresholds() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"wake": {"engines": ["openwakeword", "porcupine"],
                                 "thresholds": {"hey_jarvis:snowboy": 0.5}}})
    text = str(caught.value)
    assert "porcupine" in text and "snowboy" in text
    ok = parse_settings({"wake": {"thresholds": {"hey_jarvis:microwakeword": 0.6}}})
    assert ok.wake.thresholds == {"hey_jarvis:microwakeword": 0.6}
