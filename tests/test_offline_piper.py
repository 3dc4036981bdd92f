"""PiperTTS with the real joe voice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import OfflineSettings
from edge_agent.errors import ModelError
from edge_agent.offline import PiperTTS, default_piper_voice
from edge_agent.offline.pieces import MAX_PIECE_PHONEMES


@pytest.fixture(scope="module")
def tts(steady_voice: Path) -> PiperTTS:
    return PiperTTS(steady_voice)


def collect(tts: PiperTTS, text: str, limit: int | None = None) -> list[bytes]:
    async def scenario() -> list[bytes]:
        chunks = []
        stream = tts.synthesize(text)
        async for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == limit:
                await stream.aclose()  # what a barge-in does to the turn's TTS
                break
        return chunks

    return asyncio.run(asyncio.wait_for(scenario(), 60))


def test_default_voice_is_the_joe_package_unless_configured(tmp_path: Path) -> None:
    assert default_piper_voice(OfflineSettings()).name == "en_US-joe-medium.onnx"
    mine = tmp_path / "mine.onnx"
    assert default_piper_voice(OfflineSettings(piper_voice=str(mine))) == mine


def test_one_sentence_is_one_chunk_of_speech(tts: PiperTTS) -> None:
    assert tts.name == "piper" and tts.sample_rate == 22050
    (pcm,) = collect(tts, "It's five past three.")
    samples = np.frombuffer(pcm, dtype=np.int16)
    seconds = len(samples) / tts.sample_rate
    assert 0.5 < seconds < 4.0
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300, "synthesized silence"


def test_sentences_stream_one_by_one(tts: PiperTTS) -> None:
    chunks = collect(tts, "The pasta timer is done. Your other timer has two minutes left.")
    assert len(chunks) == 2
    assert all(len(c) % 2 == 0 and len(c) > 0 for c in chunks)


def test_closing_the_stream_stops_synthesis(tts: PiperTTS) -> None:
    text = "One. Two. Three. Four. Five."
    assert len(collect(tts, text)) == 5
    assert len(collect(tts, text, limit=1)) == 1


LONG = ("When the network comes back, I will answer your question in full, with the "
        "weather for tomorrow, the news of the day, the traffic on your way to work and "
        "the reminders you asked me to keep.")


def pauses(pcm: bytes, rate: int, longer_than: float) -> list[float]:
    """Silent stretches (under 2 % of the peak) inside the speech, in seconds."""
    samples = np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.float64))
    loud = np.flatnonzero(samples >= 0.02 * samples.max())
    gaps = np.diff(loud) / rate
    return [float(g) for g in gaps if g > longer_than]


def test_a_long_sentence_is_voiced_in_bounded_pieces_and_spoken_whole(
        tts: PiperTTS, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piper's working memory grows with the length of one call (about 1 MB per
    phoneme), so a long sentence goes in pieces: every phoneme is voiced, no
    call is over the bound, and the joins between words are not heard as pauses."""
    voice = tts._voice
    (phonemes,) = voice.phonemize(LONG)
    calls: list[list[str]] = []
    to_ids = voice.phonemes_to_ids
    monkeypatch.setattr(voice, "phonemes_to_ids", lambda p: calls.append(p) or to_ids(p))

    (pcm,) = collect(tts, LONG)

    assert len(calls) >= len(phonemes) // MAX_PIECE_PHONEMES + 1
    assert max(map(len, calls)) <= MAX_PIECE_PHONEMES
    assert "".join(map("".join, calls)).replace(" ", "") == "".join(phonemes).replace(" ", "")
    whole = voice.phoneme_ids_to_audio(to_ids(phonemes))
    seconds = len(pcm) / 2 / tts.sample_rate
    print(f"\n{len(phonemes)} phonemes in {len(calls)} pieces: {seconds:.2f} s of speech "
          f"(one call: {len(whole) / tts.sample_rate:.2f} s)")
    assert 0.8 < seconds / (len(whole) / tts.sample_rate) < 1.2
    # Four commas: four pauses. Piper pads every call with 0.1-0.25 s of silence at
    # its end; a cut between words that kept it would be heard as a pause too.
    assert len(pauses(pcm, tts.sample_rate, longer_than=0.15)) <= LONG.count(",")


def test_empty_text_yields_nothing(tts: PiperTTS) -> None:
    assert collect(tts, "  ") == []
    assert collect(tts, "\x00\n\t") == []


def test_control_characters_are_not_spoken(tts: PiperTTS) -> None:
    assert len(collect(tts, "Hello\x00 there.\n")) == 1


def test_missing_voice_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        PiperTTS(tmp_path / "none.onnx")


def test_broken_voice_is_a_model_error(tmp_path: Path) -> None:
    voice = tmp_path / "broken.onnx"
    voice.write_bytes(b"not an onnx model")
    config = json.loads(Path(f"{default_piper_voice(OfflineSettings())}.json").read_text())
    Path(f"{voice}.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="cannot load"):
        PiperTTS(voice)
