"""The audio checks: the microphone's level while the owner speaks, the wake-word
scores on the same audio, and a test tone on the speaker; or, while a daemon
holds the devices, what its control socket says about them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_agent.audio.devices import NO_DEVICE_HINT
from edge_agent.config import SECONDED_HEAD, Settings
from edge_agent.doctor.findings import Finding, fail, ok, skip
from edge_agent.errors import EdgeAgentError
from edge_agent.wake._second import SECOND

MIC_OPEN_WAIT = 3.0
"""How long the microphone gets to deliver its first audio (the daemon allows 10 s;
a diagnosis should not keep an owner waiting that long)."""
FRAME = 1280
"""80 ms at 16 kHz: the wake detector's step, and the meter's."""
TONE_SECONDS, TONE_HZ, TONE_DBFS = 0.6, 440.0, -12.0
SILENT_DBFS = -100.0
"""Floor of the level figures: digital silence is reported as this, not -inf."""
HEARD_MARGIN_DB = 15.0
"""A peak this far above the noise floor means something was said into the microphone."""

Out = Callable[[str], None]



def dbfs(value: float) -> float:
    """Level relative to int16 full scale (0 dBFS), never below SILENT_DBFS."""
    if value <= 0:
        return SILENT_DBFS
    level = min(0.0, max(SILENT_DBFS, 20 * math.log10(value / 32768)))
    return round(level, 1) + 0.0  # + 0.0: a full-scale peak reads 0.0, not -0.0


class LevelMeter:
    """Peak and noise floor (10th percentile of 20 ms RMS levels), in dBFS."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.levels: list[float] = []

    def add(self, frame: np.ndarray) -> float:
        """Take 80 ms; returns its level in dBFS (for the live meter)."""
        samples = frame.astype(np.float64)
        self.peak = max(self.peak, float(np.abs(samples).max(initial=0.0)))
        blocks = samples[: len(samples) // 320 * 320].reshape(-1, 320)
        rms = np.sqrt((blocks**2).mean(axis=1))
        self.levels.extend(dbfs(float(r)) for r in rms)
        return dbfs(float(np.sqrt((samples**2).mean()))) if len(samples) else SILENT_DBFS

    @property
    def floor(self) -> float:
        return float(np.percentile(self.levels, 10)) if self.levels else SILENT_DBFS


def _bar(level: float) -> str:
    filled = int(max(0.0, min(1.0, (level - SILENT_DBFS * 0.6) / (-SILENT_DBFS * 0.6))) * 30)
    return "#" * filled + "." * (30 - filled)


async def check_microphone_and_wake(settings: Settings, seconds: float,
                                    out: Out) -> list[Finding]:
    """Open the input, meter it for ``seconds`` while the owner speaks, and score
    the wake word on the same audio."""
    from edge_agent.audio import Microphone, RingBuffer  # PortAudio only for this check
    from edge_agent.events import EventBus
    from edge_agent.wake import WakeDetector

    try:
        wake = await asyncio.to_thread(WakeDetector, settings.wake)
    except EdgeAgentError as exc:
        wake = None
        wake_problem = str(exc)
    ring = RingBuffer(seconds + 5.0)
    mic = Microphone(settings.audio.input, ring, EventBus(), reconnect_max=1.0)
    task = asyncio.create_task(mic.run(), name="doctor-capture")
    try:
        deadline = time.monotonic() + MIC_OPEN_WAIT
        while not mic.healthy and time.monotonic() < deadline:  # noqa: ASYNC110 - a flag
            await asyncio.sleep(0.05)
        if not mic.healthy:
            hint = "" if "aplay -l" in mic.reason else f"; {NO_DEVICE_HINT}"
            return [fail("microphone", f"{settings.audio.input!r} does not open: "
                                        f"{mic.reason}",
                          f"set audio.input to a device from `edge-agent devices`{hint}")]
        reader = ring.reader("doctor", start=ring.total)
        words = ", ".join(wake.model_names) if wake else "the wake word"
        out(f"speak now: say {words.replace('_', ' ')}, then a sentence "
            f"({seconds:g} s)")
        meter = LevelMeter()
        peaks: dict[tuple[str, str], float] = {}  # by (model, engine)
        tty = sys.stdout.isatty()
        for step in range(max(1, round(seconds * 16000 / FRAME))):
            frame = await asyncio.wait_for(reader.read(FRAME), 2.0)
            level = meter.add(frame)
            if wake is not None:
                await asyncio.to_thread(wake.process, frame, (step + 1) * FRAME)
                for scorer, score in wake.engine_scores.items():
                    peaks[scorer] = max(peaks.get(scorer, 0.0), score)
            if tty:
                print(f"\r  {_bar(level)} {level:6.1f} dBFS", end="", flush=True)
        if tty:
            print()
    except TimeoutError:
        return [fail("microphone", f"{settings.audio.input!r} opened but stopped delivering "
                                    "audio", "check the cable and `dmesg` for USB errors")]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    findings = [microphone_finding(settings, meter)]
    if wake is None:
        findings.append(fail("wake word", wake_problem, "check wake.models"))
    else:
        findings += wake_findings(peaks, wake.threshold)
    return findings


def wake_findings(peaks: dict[tuple[str, str], float],
                  threshold: Callable[[str, str], float]) -> list[Finding]:
    """One finding per wake word: each engine's peak against that engine's own
    threshold (``wake.thresholds`` may set one per "model:engine"). It passes if
    any engine passes, as the detector wakes when either does; the seconded
    head only with a stock engine's second."""
    findings = []
    for name in dict.fromkeys(model for model, _ in peaks):
        scored = [(engine, peak, threshold(name, engine))
                  for (model, engine), peak in sorted(peaks.items()) if model == name]
        detail = f"{name}: peak score " + ", ".join(
            f"{peak:.2f} {'>=' if peak >= limit else '<'} threshold {limit:.2f} ({engine})"
            for engine, peak, limit in scored)
        stock = [s for s in scored if s[0] != SECONDED_HEAD]
        seconded = any(peak >= SECOND for _, peak, _ in stock)
        if any(peak >= limit and (engine != SECONDED_HEAD or seconded)
               for engine, peak, limit in scored):
            findings.append(ok("wake word", detail))
            continue
        # The stock engine nearest its own threshold is the one to lower first.
        engine, peak, _ = max(stock or scored, key=lambda s: s[1] / s[2] if s[2] else 1.0)
        findings.append(fail(
            "wake word", detail,
            f"say {name.replace('_', ' ')} clearly within 1-3 m of the microphone and run "
            f"doctor again; if it never reaches the threshold, lower wake.thresholds."
            f'"{name}:{engine}" toward {max(0.1, peak):.2f} (more false wakes)'))
    return findings


def microphone_finding(settings: Settings, meter: LevelMeter) -> Finding:
    peak, floor = dbfs(meter.peak), meter.floor
    figures = f"peak {peak:.1f} dBFS, noise floor {floor:.1f} dBFS"
    if meter.peak == 0:
        return fail("microphone", f"{settings.audio.input!r} delivers only digital silence",
                     "unmute and raise the capture level (alsamixer, F4), or choose another "
                     "input (edge-agent devices)")
    if peak - floor < HEARD_MARGIN_DB:
        return fail("microphone", f"heard nothing above the background ({figures})",
                     "speak when doctor says so; else raise the capture level (alsamixer) "
                     "or move the microphone closer")
    return ok("microphone", f"{settings.audio.input!r}: {figures}")


async def check_speaker(settings: Settings) -> Finding:
    """A short tone through the daemon's own Player."""
    from edge_agent.audio import Player
    from edge_agent.events import Event, EventBus

    reasons: list[str] = []

    def note(event: Event) -> None:
        if event.name == "audio_device" and not event.fields.get("ok"):
            reasons.append(str(event.fields.get("reason")))

    bus = EventBus()
    bus.subscribe(note)
    player = Player(settings.audio.output, bus, volume=settings.audio.volume)
    try:
        await asyncio.to_thread(player.open)
        if not player.healthy:
            reason = reasons[-1] if reasons else "cannot open it"
            hint = "" if "aplay -l" in reason else f"; {NO_DEVICE_HINT}"
            return fail("speaker", f"{settings.audio.output!r} does not open: {reason}",
                         f"set audio.output to a device from `edge-agent devices`{hint}")
        rate = 16000
        t = np.arange(int(TONE_SECONDS * rate)) / rate
        amplitude = 32767 * 10 ** (TONE_DBFS / 20)
        tone = (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
        stream = player.stream(engine="doctor", events=False)
        stream.write(tone.tobytes(), rate)
        stream.end()
        await asyncio.wait_for(stream.drained(), TONE_SECONDS + 5.0)
    except TimeoutError:
        return fail("speaker", f"{settings.audio.output!r} took the tone but never played it",
                     "check the device (aplay -l) and `dmesg`")
    finally:
        await asyncio.to_thread(player.close)
    return ok("speaker", f"{settings.audio.output!r}: played a {TONE_SECONDS:g} s "
                          f"{TONE_HZ:g} Hz tone (heard nothing? check the volume in alsamixer)")


def daemon_audio(status: dict, socket_path: Path | None) -> list[Finding]:
    """The devices as the running daemon sees them."""
    findings = []
    for check, key, fix in (
            ("microphone", "microphone", "journalctl -u edge-agent -e shows why; "
                                         f"{NO_DEVICE_HINT}"),
            ("speaker", "speaker", f"journalctl -u edge-agent -e shows why; {NO_DEVICE_HINT}")):
        if status.get(key):
            findings.append(ok(check, f"working in the running daemon ({socket_path})"))
        else:
            findings.append(fail(check, f"not working in the running daemon ({socket_path})",
                                  fix))
    findings.append(skip("wake word", "the running daemon holds the microphone: say the "
                                       "wake word and watch `journalctl -u edge-agent -f`"))
    return findings
