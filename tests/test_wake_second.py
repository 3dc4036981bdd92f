"""wake.seconded_head: edge-agent's own head votes, heard only when a stock
engine seconds it, judged the same way by the detector and the evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config import WakeSettings, parse_settings
from edge_agent.errors import ConfigError
from edge_agent.tools.rooms import floor_noise
from edge_agent.tools.voices import flite, silence
from edge_agent.tools.wake_eval import HEAD, MWW, OWW, SECOND_SWEEP, choose, second_label, seconded
from edge_agent.wake import WakeDetector
from edge_agent.wake._second import HEAD_THRESHOLD, SecondedVote, SecondRule
from tests.test_wake import feed, spoken_end


def test_the_head_needs_a_second_within_the_window() -> None:
    vote = SecondedVote(SecondRule(head=0.9, second=0.1, within=3))
    assert not vote.step(0.99, 0.05), "the head alone is not enough"
    assert vote.step(0.2, 0.15), "a second one step later still counts"
    assert vote.step(0.2, 0.0) and not vote.step(0.2, 0.0), "both age out together"
    assert not vote.step(0.0, 0.3) and not vote.step(0.0, 0.3), "a second alone is nothing"
    assert vote.step(0.95, 0.0), "and the head may come after its second"
    vote.reset()
    assert not vote.step(0.0, 0.0)


def test_a_seconded_detection_reports_the_bursts_first_pass_and_peak() -> None:
    vote = SecondedVote(SecondRule(head=0.9, second=0.1, within=3))
    vote.step(0.92, 0.0)
    vote.step(0.99, 0.0)
    assert vote.step(0.95, 0.2)
    assert (vote.first_age, vote.peak) == (2, 0.99)
    for _ in range(3):
        vote.step(0.0, 0.0)
    vote.step(0.91, 0.0)
    assert (vote.first_age, vote.peak) == (0, 0.91), "a pass after the window starts anew"


def _take() -> np.ndarray:
    """A CMU voice (held out for every engine) that openWakeWord and
    microWakeWord both score under 0.5 and over 0.1, and the head over HEAD_THRESHOLD."""
    audio = np.concatenate([silence(1.6), flite("hey jarvis what song is this", voice="awb"),
                            silence(1.2)]).astype(np.float64)
    # The evaluation's clean room for this take: with another noise seed or
    # 80 ms phase openWakeWord hears it (0.98), so the take is pinned.
    return np.round(audio + floor_noise(len(audio), seed=800)).astype(np.int16)


def _detector(**settings) -> WakeDetector:
    return WakeDetector(WakeSettings(**settings))


def test_a_take_the_stock_engines_half_hear_is_heard_when_the_head_is_seconded() -> None:
    assert feed(_detector(seconded_head=False), _take()) == [], "the stock engines miss it"
    detector = _detector(seconded_head=True)
    found = feed(detector, _take())
    assert [(d.model, d.engine) for d in found] == [("hey_jarvis", "own_head")]
    assert found[0].score >= HEAD_THRESHOLD, "the head's peak, not whatever it scores when seconded"
    phrase_end = 1.6 * 16000 + spoken_end(flite("hey jarvis", voice="awb"))
    assert abs(found[0].end_index - phrase_end) < 0.3 * 16000, "the utterance starts there"
    peaks = detector.status()["peaks"]["hey_jarvis"]
    assert peaks["own_head"] >= HEAD_THRESHOLD
    assert 0.1 <= max(peaks["openwakeword"], peaks["microwakeword"]) < 0.5


def test_a_stricter_head_threshold_or_playback_silences_the_seconded_vote() -> None:
    assert feed(_detector(seconded_head=True,
                          thresholds={"hey_jarvis:own_head": 1.0}), _take()) == []
    playing = _detector(seconded_head=True)
    playing.set_playing(True)
    assert feed(playing, _take()) == [], "its own voice must not wake an uncancelled speaker"
    [(_, vote)] = playing._heads
    assert vote.head_age > vote.rule.within, "nor be remembered to be seconded after it stops"


def test_config_takes_a_threshold_for_the_seconded_head() -> None:
    ok = parse_settings({"wake": {"seconded_head": True,
                                  "thresholds": {"hey_jarvis:own_head": 0.95}}})
    assert _detector(**vars(ok.wake)).threshold("hey_jarvis", "own_head") == 0.95
    assert _detector(threshold=0.97).threshold("hey_jarvis", "own_head") == 0.97, \
        "a stricter wake threshold never leaves the head laxer"
    with pytest.raises(ConfigError, match="'own_hed' is not one of openwakeword, "
                                          "microwakeword, own_head"):
        parse_settings({"wake": {"thresholds": {"hey_jarvis:own_hed": 0.95}}})
    with pytest.raises(ConfigError, match="ships no head for alexa"):
        parse_settings({"wake": {"models": ["alexa"], "thresholds": {"alexa:own_head": 0.95}}})
    with pytest.raises(ConfigError, match=r"from 0\.5"):
        parse_settings({"wake": {"thresholds": {"hey_jarvis:own_head": 0.2}}})


def test_the_head_votes_only_beside_the_engine_whose_features_it_reads() -> None:
    assert _detector(own_head=True).engines == ["microwakeword", "openwakeword"]
    assert _detector(engines=["microwakeword"]).engines == ["microwakeword"]


def test_the_evaluation_judges_as_the_detector_does() -> None:
    detector = _detector(seconded_head=True)
    scores: dict[str, list[float]] = {OWW: [], MWW: [], HEAD: []}
    fired = []
    audio = _take()
    step = WakeDetector.FRAME_SAMPLES
    for k in range(len(audio) // step):
        found = detector.process(audio[k * step:(k + 1) * step], (k + 1) * step)
        for name, engine in ((OWW, "openwakeword"), (MWW, "microwakeword"), (HEAD, "own_head")):
            scores[name].append(detector.engine_scores["hey_jarvis", engine])
        fired.append(found is not None)
    judged = seconded({k: np.asarray(v, np.float32) for k, v in scores.items()}) >= 0.5
    assert np.flatnonzero(fired)[0] == np.flatnonzero(judged)[0]


def _row(rule: SecondRule | str, espeak: float, validation_wakes: int = 1,
         alikes: float = 1.0) -> dict:
    return {"rule": rule if isinstance(rule, str) else second_label(rule),
            "miss_rate": {"espeak": espeak, "piper": 0.0},
            "false_wakes_validation": validation_wakes, "sound_alike_hits_validation": alikes}


STOCK_OR = "openwakeword 0.5 or microwakeword 0.5"


def test_the_rule_is_chosen_on_validation_columns_only() -> None:
    """The stock engines wake once on the validation speech and on one
    sound-alike: a rule may add neither."""
    rows = [_row(STOCK_OR, espeak=0.4), *(_row(r, espeak=0.2) for r in SECOND_SWEEP)]
    loose, strict = SecondRule(head=0.5, second=0.02), SecondRule(head=0.95, second=0.2)
    by = {r["rule"]: r for r in rows}
    by[second_label(loose)].update(_row(loose, espeak=0.01, validation_wakes=2))
    assert choose(rows)["rule"] != second_label(loose), "a false wake added rules it out"
    by[second_label(loose)].update(_row(loose, espeak=0.01, alikes=1.25))
    assert choose(rows)["rule"] != second_label(loose), "so does a sound-alike hit added"
    by[second_label(loose)].update(_row(loose, espeak=0.01))
    assert choose(rows)["rule"] == second_label(loose), "then the fewest espeak-ng misses"
    by[second_label(loose)].update(_row(loose, espeak=0.2))
    assert choose(rows)["rule"] == second_label(strict), "and on a tie, the strictest"
    # Held-out columns (cmu, the read speech) are never read.
    assert all("cmu_rooms" not in r and "false_wakes" not in r for r in rows)


def test_no_rule_is_chosen_when_every_one_adds_wakes_on_validation_speech() -> None:
    rows = [_row(STOCK_OR, espeak=0.4, validation_wakes=0),
            *(_row(r, espeak=0.1) for r in SECOND_SWEEP)]
    assert choose(rows) is None
