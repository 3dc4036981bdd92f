"""edge-agent's second wake-word head: its file format, the shipped head
beside openWakeWord's model, and the training recipe's promises."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config import WakeSettings
from edge_agent.errors import ModelError
from edge_agent.tools import train_wake
from edge_agent.tools.voices import espeak, piper, silence
from edge_agent.wake import WakeDetector
from edge_agent.wake._head import NumpyHead, save_head
from edge_agent.wake._models import bundled_head
from edge_agent.wake._scoring import WakeWordScorer
from tests.test_wake import feed

RATE = 16000


def random_head(path, *, windows: int = 16, hidden: int = 8, seed: int = 0) -> train_wake.Mlp:
    net = train_wake.Mlp(windows * 96, hidden, np.random.default_rng(seed))
    save_head(path, net.params, windows=windows, phrase="my word", trained_with="{}")
    return net


def test_training_material_is_disjoint_from_the_evaluation() -> None:
    train_wake.check_disjoint()


def test_a_saved_head_scores_what_the_trained_net_scores(tmp_path) -> None:
    net = random_head(tmp_path / "w.npz")
    head = NumpyHead(tmp_path / "w.npz")
    x = np.random.default_rng(1).normal(size=(5, 16, 96)).astype(np.float32)
    expected = 1 / (1 + np.exp(-net.logits(x.reshape(5, -1))))
    np.testing.assert_allclose(head(x).ravel(), expected, rtol=1e-5)
    assert head.input_shape == [1, 16, 96] and head.phrase == "my word"
    assert head.sustain == 1


def test_the_operating_point_reads_one_half(tmp_path) -> None:
    """A head saved at operating point 0.7 scores 0.5 where the net gave 0.7."""
    net = train_wake.Mlp(16 * 96, 8, np.random.default_rng(0))
    save_head(tmp_path / "w.npz", net.params, windows=16, phrase="x", trained_with="{}",
              operating_point=0.7)
    x = np.random.default_rng(1).normal(size=(50, 16, 96)).astype(np.float32)
    raw = 1 / (1 + np.exp(-net.logits(x.reshape(50, -1))))
    shifted = NumpyHead(tmp_path / "w.npz")(x).ravel()
    np.testing.assert_array_equal(shifted >= 0.5, raw >= 0.7 - 1e-6)


def test_the_trainer_learns_a_separable_problem() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(5000) < 0.3).astype(np.int8)
    x = rng.normal(size=(5000, 192)).astype(np.float32)
    x[y == 1, :8] += 2.0  # positives differ in a few features
    net = train_wake.train(x[:4000], y[:4000], hidden=8, epochs=10, seed=0,
                           negative_weight=1.0, hard_rounds=1)
    guess = net.logits(x[4000:]) > 0
    assert np.mean(guess == (y[4000:] == 1)) > 0.95


def test_averaged_nets_score_the_mean_of_their_logits(tmp_path) -> None:
    """Nets of different widths make one net, and one head file, whose logit
    is their mean."""
    narrow = train_wake.Mlp(16 * 96, 4, np.random.default_rng(5))
    wide = train_wake.Mlp(16 * 96, 8, np.random.default_rng(6))
    averaged = train_wake.averaged([narrow, wide])
    x = np.random.default_rng(7).normal(size=(20, 16 * 96)).astype(np.float32)
    mean = (narrow.logits(x) + wide.logits(x)) / 2
    np.testing.assert_allclose(averaged.logits(x), mean, rtol=1e-4, atol=1e-5)
    assert not np.allclose(mean, narrow.logits(x), atol=1e-3)
    save_head(tmp_path / "averaged.npz", averaged.params, windows=16, phrase="x", trained_with="{}")
    head = NumpyHead(tmp_path / "averaged.npz")
    np.testing.assert_allclose(head(x.reshape(20, 16, 96)).ravel(), 1 / (1 + np.exp(-mean)),
                               rtol=1e-4)


def test_bad_head_files_raise_model_error(tmp_path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"garbage\.npz"):
        NumpyHead(garbage)
    odd = tmp_path / "odd.npz"
    save_head(odd, train_wake.Mlp(16 * 96 + 1, 4, np.random.default_rng(0)).params,
              windows=16, phrase="x", trained_with="{}")
    with pytest.raises(ModelError, match="do not fit 16 embeddings"):
        NumpyHead(odd)
    narrow = tmp_path / "narrow.npz"  # 16 embeddings of 72, not openWakeWord's 96
    save_head(narrow, train_wake.Mlp(12 * 96, 4, np.random.default_rng(0)).params,
              windows=16, phrase="x", trained_with="{}")
    with pytest.raises(ModelError, match=r"narrow\.npz is not an openWakeWord classifier"):
        WakeWordScorer("hey_jarvis", head=narrow)
    for lag in (float("nan"), -0.1):
        constant_head(tmp_path / "lag.npz", score_logit=0.0, sustain=1, lag=lag)
        with pytest.raises(ModelError, match=r"lag\.npz: lag .* is not a time after the phrase"):
            NumpyHead(tmp_path / "lag.npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, w1=np.zeros((1536, 4)))
    with pytest.raises(ModelError, match=r"partial\.npz"):
        NumpyHead(partial)


def test_a_custom_npz_head_is_a_wake_model(tmp_path) -> None:
    random_head(tmp_path / "my_word.npz", windows=12)
    detector = WakeDetector(WakeSettings(models=[str(tmp_path / "my_word.npz")], threshold=0.0,
                                         warmup_seconds=0.5), gate=False)
    assert detector.model_names == ["my_word"]
    found = feed(detector, piper("hello there"))
    assert 0.0 < detector.last_scores["my_word"] < 1.0
    assert found and found[0].model == "my_word"


def test_hey_jarvis_ships_its_own_head_and_the_others_do_not() -> None:
    assert bundled_head("hey_jarvis") is not None
    assert NumpyHead(bundled_head("hey_jarvis")).phrase == "hey jarvis"
    assert bundled_head("alexa") is None


OWW = ["openwakeword"]
STOCK = {"engines": OWW, "seconded_head": False}
"""openWakeWord's bundled model alone."""
HEAD = {"own_head": True, "engines": OWW}
"""The head is opt-in and replaces openWakeWord's classifier alone."""


def _scores(detector: WakeDetector, audio: np.ndarray) -> np.ndarray:
    detector.reset()
    out = []
    for i in range(0, len(audio) - 1279, 1280):
        detector.process(audio[i:i + 1280], i + 1280)
        out.append(detector.last_scores["hey_jarvis"])
    return np.asarray(out)


def test_the_own_head_hears_takes_the_bundled_model_misses() -> None:
    audio = np.concatenate([silence(2.0), espeak("hey jarvis", voice="en-029", speed=140,
                                                 pitch=60), silence(1.0)])
    bundled = _scores(WakeDetector(WakeSettings(**STOCK), gate=False), audio)
    own = _scores(WakeDetector(WakeSettings(**HEAD), gate=False), audio)
    assert own.max() > 0.5 > bundled.max()


def test_the_own_head_scores_instead_of_the_bundled_model(tmp_path, monkeypatch) -> None:
    """A head that always says no silences a take the bundled model is sure of."""
    audio = np.concatenate([silence(2.0), piper("hey jarvis"), silence(1.0)])
    assert _scores(WakeDetector(WakeSettings(**STOCK), gate=False), audio).max() > 0.9
    monkeypatch.setattr("edge_agent.wake._models.HEADS_DIR", tmp_path)
    constant_head(tmp_path / "hey_jarvis.npz", score_logit=-6.0, sustain=1)
    own = _scores(WakeDetector(WakeSettings(**HEAD), gate=False), audio)
    assert own.max() == pytest.approx(0.5 * (1 + np.tanh(-3.0)), rel=1e-4)


def constant_head(path, *, score_logit: float, sustain: int, lag: float | None = None) -> None:
    """A head that scores the same on any audio: sigmoid(score_logit)."""
    params = {"w1": np.zeros((16 * 96, 2)), "b1": np.zeros(2), "w2": np.zeros((2, 1)),
              "b2": np.array([score_logit])}
    save_head(path, params, windows=16, phrase="hey jarvis", trained_with="{}",
              sustain=sustain, lag=lag)


@pytest.mark.parametrize(("head_lag", "expected_lag"), [(0.04, 0.04), (None, 0.16)])
def test_end_index_takes_the_heads_lag_or_the_models(tmp_path, monkeypatch, head_lag,
                                                    expected_lag: float) -> None:
    """A head fires sooner after the phrase than openWakeWord's model: the
    wake phrase's end is placed with the lag the head carries, or with the
    model's when it carries none."""
    monkeypatch.setattr("edge_agent.wake._models.HEADS_DIR", tmp_path)
    constant_head(tmp_path / "hey_jarvis.npz", score_logit=6.0, sustain=2, lag=head_lag)
    detector = WakeDetector(WakeSettings(warmup_seconds=0.5, **HEAD), gate=False)
    found = feed(detector, piper("the weather tomorrow"))
    assert found, "the constant head passes on every step"
    first = found[0]
    assert first.score == pytest.approx(0.5 * (1 + np.tanh(3.0)))
    step_end = next(k for k in range(1280, 10 * RATE, 1280) if k >= 0.5 * RATE)
    assert first.end_index == step_end - round(expected_lag * RATE)


@pytest.mark.parametrize(("sustain", "counts_from_step"), [(1, 1), (3, 3)])
def test_a_head_vote_counts_once_sustained(tmp_path, monkeypatch, sustain: int,
                                           counts_from_step: int) -> None:
    monkeypatch.setattr("edge_agent.wake._models.HEADS_DIR", tmp_path)
    constant_head(tmp_path / "hey_jarvis.npz", score_logit=6.0, sustain=sustain)
    detector = WakeDetector(WakeSettings(**HEAD), gate=False)
    audio = piper("the weather tomorrow")
    for step in range(1, 6):
        detector.process(audio[(step - 1) * 1280:step * 1280], step * 1280)
        expected = 0.5 * (1 + np.tanh(3.0)) if step >= counts_from_step else 0.0
        assert detector.last_scores["hey_jarvis"] == pytest.approx(expected, abs=1e-6)
    detector.reset()  # forgets the run: the head must be sustained again
    detector.process(audio[:1280], 1280)
    if sustain > 1:
        assert detector.last_scores["hey_jarvis"] < 0.9


def newest_embedding_net() -> train_wake.Mlp:
    """A net scoring sigmoid(mean of the newest embedding - 1): silence 0.27."""
    net = train_wake.Mlp(16 * 96, 2, np.random.default_rng(0))
    net.params = {"w1": np.zeros((16 * 96, 2), np.float32), "b1": np.zeros(2, np.float32),
                  "w2": np.ones((2, 1), np.float32), "b2": np.full(1, -1.0, np.float32)}
    net.params["w1"][-96:, 0] = 1 / 96
    return net


def test_the_vote_is_set_by_the_validation_sentences() -> None:
    """The sustain and operating point with the fewest validation misses while
    validation sentences stay under the bound; sound-alike phrases do not count."""
    net = newest_embedding_net()
    sentence = np.zeros((22, 96), np.float32)
    sentence[16:18] = 1.0  # two steps at 0.5
    positive = np.zeros((40, 96), np.float32)
    positive[20:30] = 3.0  # ten steps at 0.88, right after the phrase
    sound_alike = np.full((22, 96), 5.0, np.float32)
    clips = [(positive, 21 * 1280), (sentence, None), (sound_alike, None)]
    # A long stretch of silent speech clips so one false wake is under the bound.
    quiet = [(np.zeros((22, 96), np.float32), None)] * 3000
    validation = clips + quiet
    raws = [train_wake.window_scores(net, clip) for clip in validation]
    sustain, point, table = train_wake.choose_vote(
        raws, validation, [None, "speech", "confusable"] + ["speech"] * 3000)
    # Sustain 2 needs a point above the sentence's 0.5; sustain 3 gets by at
    # 0.5, but misses no fewer positives, and the shorter sustain wins a tie.
    assert (sustain, point) == (2, 0.55)
    assert (table["2@0.5"]["speech_false_accepts_per_hour"]
            > train_wake.VALIDATION_FALSE_ACCEPTS_PER_HOUR)
    assert table["3@0.5"] == {"false_reject_rate": 0.0, "speech_false_accepts_per_hour": 0.0}


def test_the_vote_lag_is_the_median_first_pass_after_the_phrase() -> None:
    """Three positives whose score rises 1, 2 and 6 steps after the phrase's
    end: with sustain 2 their votes pass 2, 3 and 7 steps after it (0.16,
    0.24, 0.56 s), and the lag is the middle one."""
    net = newest_embedding_net()
    clips = []
    for steps_late in (1, 2, 6):
        emb = np.zeros((40, 96), np.float32)
        emb[19 + steps_late:30 + steps_late] = 3.0  # scores 0.88
        clips.append((emb, 20 * 1280))  # the phrase ends where frame 20 starts
    validation = [*clips, (np.zeros((30, 96), np.float32), None)]
    raws = [train_wake.window_scores(net, clip) for clip in validation]
    lag = train_wake.vote_lag(raws, 2, 0.8, validation)
    assert lag == 0.24


def test_subnormal_weights_are_flushed(tmp_path) -> None:
    """Dead units' weights decay to subnormal floats, which the CPU multiplies
    slowly; they are zeroed on load without changing the scores."""
    net = train_wake.Mlp(16 * 96, 4, np.random.default_rng(3))
    net.params["w1"][:, 0] = 1e-40  # subnormal in float32
    save_head(tmp_path / "w.npz", net.params, windows=16, phrase="x", trained_with="{}")
    head = NumpyHead(tmp_path / "w.npz")
    assert not np.any(head._w1[:, 0])
    x = np.random.default_rng(1).normal(size=(3, 16, 96)).astype(np.float32)
    expected = 1 / (1 + np.exp(-net.logits(x.reshape(3, -1))))
    np.testing.assert_allclose(head(x).ravel(), expected, rtol=1e-5)


def test_a_custom_head_named_alone_keeps_its_sustain(tmp_path) -> None:
    constant_head(tmp_path / "my_word.npz", score_logit=6.0, sustain=3)
    detector = WakeDetector(WakeSettings(models=[str(tmp_path / "my_word.npz")]), gate=False)
    audio = piper("the weather tomorrow")
    seen = []
    for step in range(1, 5):
        detector.process(audio[(step - 1) * 1280:step * 1280], step * 1280)
        seen.append(detector.last_scores["my_word"])
    assert seen == pytest.approx([0.0, 0.0, 0.5 * (1 + np.tanh(3.0)), 0.5 * (1 + np.tanh(3.0))])
