"""The evaluation's rooms do what their names say."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.tools.rooms import (
    NOISE_FLOOR,
    ROOMS,
    RT60,
    at_snr,
    impulse_response,
    in_room,
)

RATE = 16000


def tone_take() -> tuple[np.ndarray, tuple[int, int]]:
    t = np.arange(RATE) / RATE
    speech = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    return np.concatenate([np.zeros(RATE, np.int16), speech, np.zeros(RATE, np.int16)]), \
        (RATE, 2 * RATE)


def no_babble(samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, samples)


def test_digital_silence_is_exact_zeros_around_the_speech() -> None:
    take, span = tone_take()
    out = in_room(take, span, "digital silence", seed=1, babble=no_babble)
    assert not out[:span[0]].any() and not out[span[1]:].any()


def test_the_clean_room_has_a_minus_64_dbfs_floor() -> None:
    take, span = tone_take()
    out = in_room(take, span, "clean", seed=1, babble=no_babble)
    floor_dbfs = 20 * np.log10(out[:span[0]].astype(float).std() / 32768)
    assert floor_dbfs == pytest.approx(20 * np.log10(NOISE_FLOOR / 32768), abs=0.5)
    assert round(floor_dbfs) == -64


def test_the_impulse_response_decays_60_db_in_rt60() -> None:
    h = impulse_response(seed=3)
    energy = np.cumsum(h[::-1] ** 2)[::-1]  # Schroeder backward integral
    decay_db = 10 * np.log10(energy / energy[1])
    at_rt60 = decay_db[int(RT60 * RATE * 0.5)]  # -30 dB at half the RT60
    assert at_rt60 == pytest.approx(-30, abs=4)


@pytest.mark.parametrize("room", ["babble", "noise"])
def test_backgrounds_sit_10_db_under_the_speech(room: str) -> None:
    take, span = tone_take()
    out = in_room(take, span, room, seed=2, babble=no_babble).astype(float)
    background = out - take
    ratio = np.mean(take[span[0]:span[1]].astype(float) ** 2) / np.mean(background ** 2)
    assert 10 * np.log10(ratio) == pytest.approx(10.0, abs=0.5)


def test_every_room_keeps_length_and_range() -> None:
    take, span = tone_take()
    for room in ROOMS:
        out = in_room(take, span, room, seed=4, babble=no_babble)
        assert out.dtype == np.int16 and len(out) == len(take)
    assert at_snr(take, span, np.ones(10), 0.0).shape == take.shape
