"""`edge-agent doctor`: everything a spoken conversation needs, checked in one
go by an owner over SSH, each check a pass/fail line with the fix.

Config, API key and one cheap cloud request (GET /models: the key is sent, never
shown), the microphone with a live level meter and the wake-word scores while
the owner speaks, a test tone on the speaker, the offline models where the daemon
looks, the systemd unit, the permissions of the config and key files, and the
user's groups. A running daemon holds the audio devices: then its control socket
reports on them instead, and doctor does not fight it for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import math
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import numpy as np

from edge_agent.audio.devices import NO_DEVICE_HINT
from edge_agent.config import Secret, Settings, default_config_path, load_api_key, load_config
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.offline.models import check_piper, check_vosk, install_dir
from edge_agent.service import control

SECRETS_FILE = Path("/etc/edge-agent/secrets")
"""The service's EnvironmentFile (systemd/edge-agent.service), where its key lives."""
UNIT = "edge-agent"
DEFAULT_LISTEN_SECONDS = 5.0
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


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool | None
    """True passed, False failed, None not applicable here (skipped)."""
    detail: str
    fix: str = ""


def _ok(check: str, detail: str) -> Finding:
    return Finding(check, True, detail)


def _fail(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, False, detail, fix)


def _skip(check: str, detail: str) -> Finding:
    return Finding(check, None, detail)


def format_finding(f: Finding) -> str:
    mark = {True: "ok  ", False: "FAIL", None: "skip"}[f.ok]
    line = f"{mark}  {f.check:<12} {f.detail}"
    return line + (f"\n      {'':<12} fix: {f.fix}" if f.fix else "")


# --- config and key --------------------------------------------------------------------


def check_config(path: Path | None) -> tuple[Settings, Finding]:
    """The settings to check the rest with (defaults if the file is bad) and the finding."""
    path = path or default_config_path()
    if not path.exists():
        return Settings(), _ok("config", f"no file at {path}: built-in defaults "
                                         "(start from config/edge-agent.toml)")
    if not os.access(path, os.R_OK):
        return Settings(), _fail("config", f"{path}: this user may not read it",
                                 "sudo edge-agent doctor, or join its group: sudo usermod "
                                 "-aG edge-agent $USER, then log out and in again")
    try:
        settings = load_config(path)
    except ConfigError as exc:
        return Settings(), _fail("config", "; ".join(exc.problems),
                                 f"correct the file, then: edge-agent check-config {path}")
    return settings, _ok("config", f"{path}: valid")


def find_key(settings: Settings) -> tuple[Secret | None, str, Finding]:
    """The key the daemon would send, where it comes from, and the finding. The
    service reads SECRETS_FILE as its environment, so doctor looks there too."""
    cloud = settings.cloud
    name = cloud.api_key_env
    if cloud.api_key_file:
        try:
            key, _ = load_api_key(cloud)
        except ConfigError as exc:
            return None, "", _fail("API key", "; ".join(exc.problems),
                                   f"make {cloud.api_key_file} readable by this user and the "
                                   "service only: sudo chmod 640, owner root:edge-agent")
        return key, cloud.api_key_file, _ok("API key", f"present in {cloud.api_key_file}")
    if os.environ.get(name, "").strip():
        return Secret(os.environ[name].strip()), f"${name}", _ok(
            "API key", f"present in ${name}")
    where = f"{name}=... in {SECRETS_FILE} (the service reads it) or export {name}=... " \
            "for a daemon run by hand"
    try:
        lines = SECRETS_FILE.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        return None, "", _fail(
            "API key", f"${name} is not set and {SECRETS_FILE} cannot be read "
                       f"({exc.strerror or exc})",
            f"run doctor as a user who may read it (sudo edge-agent doctor), or put {where}")
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key.strip().removeprefix("export ").strip() == name:
            value = value.strip().strip("'\"")
            if value:
                return Secret(value), str(SECRETS_FILE), _ok(
                    "API key", f"present in {SECRETS_FILE}")
    return None, "", _fail("API key", f"missing: ${name} is not set and {SECRETS_FILE} has "
                                      f"no {name}", f"put {where}")


# --- cloud -----------------------------------------------------------------------------


def check_cloud(settings: Settings, key: Secret | None, key_source: str) -> Finding:
    """One GET /models: reachable, and the key accepted. Distinguishes DNS, refused,
    timeout, TLS, a captive portal and a refused key; the key never appears."""
    cloud = settings.cloud
    if not cloud.enabled:
        return _skip("cloud", "cloud.enabled = false: every answer comes from the device")
    url = cloud.base_url.rstrip("/") + "/models"
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    limit = cloud.timeouts.connect * 2
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx2.Client(timeout=httpx2.Timeout(limit, connect=cloud.timeouts.connect)) as c:
            started = time.monotonic()  # the request alone, not the client's TLS set-up
            response = c.get(url, headers=headers)
    except httpx2.TimeoutException:
        return _fail("cloud", f"no answer from {host} within {limit:g} s (timeout)",
                     "check the network (ping, a firewall or proxy); a slow link may need "
                     "a larger cloud.timeouts.connect")
    except httpx2.HTTPError as exc:
        return _connection_failure(exc, host)
    ms = (time.monotonic() - started) * 1000
    status = response.status_code
    ctype = response.headers.get("content-type", "").lower()
    if ctype.startswith(("text/html", "application/xhtml")):
        return _fail("cloud", f"{host} answered with a web page, not the API: a captive "
                              "portal or proxy is in the way",
                     "log in to the network's portal in a browser, or check cloud.base_url")
    if status in (401, 403):
        if key is None:
            return _skip("cloud", f"{host} is reachable; it wants an API key (HTTP {status})")
        return _fail("cloud", f"{host} refused the API key from {key_source} (HTTP {status})",
                     f"check the key with your provider and replace it in {key_source}")
    if status == 404:
        return _fail("cloud", f"no API at {url} (HTTP 404)",
                     "check cloud.base_url (an OpenAI-compatible API, usually ending in /v1)")
    if status >= 500:
        return _fail("cloud", f"{host} has a fault (HTTP {status})",
                     "the service's problem: try again later (answers work offline meanwhile)")
    if status >= 400 and status != 429:
        return _fail("cloud", f"{host} rejected the request (HTTP {status})",
                     "check cloud.base_url and the key")
    accepted = "accepted the API key" if key else "answered without a key"
    return _ok("cloud", f"{host} {accepted} (GET /models: HTTP {status} in {ms:.0f} ms)")


def _connection_failure(exc: BaseException, host: str) -> Finding:
    causes = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(c) for c in causes)
    if any(isinstance(c, socket.gaierror) for c in causes) or "name resolution" in text \
            or "Name or service not known" in text or "nodename nor servname" in text:
        return _fail("cloud", f"cannot resolve {host.split(':')[0]} (DNS)",
                     "check the network and its DNS (getent hosts "
                     f"{host.split(':')[0]}), or the spelling of cloud.base_url")
    if any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in text:
        return _fail("cloud", f"{host} refused the connection: nothing listens there",
                     "check cloud.base_url; a server on your network must be running")
    if any(isinstance(c, ssl.SSLError) for c in causes) or "certificate" in text.lower():
        return _fail("cloud", f"TLS with {host} failed ({type(causes[-1]).__name__})",
                     "check the clock (date), a proxy that intercepts HTTPS, or the CA "
                     "certificates (SSL_CERT_FILE)")
    return _fail("cloud", f"cannot connect to {host} ({type(causes[-1]).__name__}: "
                          f"{causes[-1]})", "check the network (ip route, ping)")


# --- audio -----------------------------------------------------------------------------


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
            return [_fail("microphone", f"{settings.audio.input!r} does not open: "
                                        f"{mic.reason}",
                          f"set audio.input to a device from `edge-agent devices`{hint}")]
        reader = ring.reader("doctor", start=ring.total)
        words = ", ".join(wake.model_names) if wake else "the wake word"
        out(f"speak now: say {words.replace('_', ' ')}, then a sentence "
            f"({seconds:g} s)")
        meter = LevelMeter()
        scores: dict[str, float] = dict.fromkeys(wake.model_names, 0.0) if wake else {}
        tty = sys.stdout.isatty()
        for step in range(max(1, round(seconds * 16000 / FRAME))):
            frame = await asyncio.wait_for(reader.read(FRAME), 2.0)
            level = meter.add(frame)
            if wake is not None:
                await asyncio.to_thread(wake.process, frame, (step + 1) * FRAME)
                for name, score in wake.last_scores.items():
                    scores[name] = max(scores[name], score)
            if tty:
                print(f"\r  {_bar(level)} {level:6.1f} dBFS", end="", flush=True)
        if tty:
            print()
    except TimeoutError:
        return [_fail("microphone", f"{settings.audio.input!r} opened but stopped delivering "
                                    "audio", "check the cable and `dmesg` for USB errors")]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    findings = [_microphone_finding(settings, meter)]
    if wake is None:
        findings.append(_fail("wake word", wake_problem, "check wake.models"))
    for name, peak in scores.items():
        threshold = wake.threshold(name) if wake else 0.0
        if peak >= threshold:
            findings.append(_ok("wake word", f"{name}: peak score {peak:.2f} >= threshold "
                                             f"{threshold:.2f}"))
        else:
            findings.append(_fail(
                "wake word", f"{name}: peak score {peak:.2f} < threshold {threshold:.2f}",
                f"say {name.replace('_', ' ')} clearly within 1-3 m of the microphone and run "
                f"doctor again; if it never reaches the threshold, lower wake.thresholds."
                f"{name} toward {max(0.1, peak):.2f} (more false wakes)"))
    return findings


def _microphone_finding(settings: Settings, meter: LevelMeter) -> Finding:
    peak, floor = dbfs(meter.peak), meter.floor
    figures = f"peak {peak:.1f} dBFS, noise floor {floor:.1f} dBFS"
    if meter.peak == 0:
        return _fail("microphone", f"{settings.audio.input!r} delivers only digital silence",
                     "unmute and raise the capture level (alsamixer, F4), or choose another "
                     "input (edge-agent devices)")
    if peak - floor < HEARD_MARGIN_DB:
        return _fail("microphone", f"heard nothing above the background ({figures})",
                     "speak when doctor says so; else raise the capture level (alsamixer) "
                     "or move the microphone closer")
    return _ok("microphone", f"{settings.audio.input!r}: {figures}")


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
            return _fail("speaker", f"{settings.audio.output!r} does not open: {reason}",
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
        return _fail("speaker", f"{settings.audio.output!r} took the tone but never played it",
                     "check the device (aplay -l) and `dmesg`")
    finally:
        await asyncio.to_thread(player.close)
    return _ok("speaker", f"{settings.audio.output!r}: played a {TONE_SECONDS:g} s "
                          f"{TONE_HZ:g} Hz tone (heard nothing? check the volume in alsamixer)")


def daemon_audio(status: dict, socket_path: Path | None) -> list[Finding]:
    """The devices as the running daemon sees them."""
    findings = []
    for check, key, fix in (
            ("microphone", "microphone", "journalctl -u edge-agent -e shows why; "
                                         f"{NO_DEVICE_HINT}"),
            ("speaker", "speaker", f"journalctl -u edge-agent -e shows why; {NO_DEVICE_HINT}")):
        if status.get(key):
            findings.append(_ok(check, f"working in the running daemon ({socket_path})"))
        else:
            findings.append(_fail(check, f"not working in the running daemon ({socket_path})",
                                  fix))
    findings.append(_skip("wake word", "the running daemon holds the microphone: say the "
                                       "wake word and watch `journalctl -u edge-agent -f`"))
    return findings


# --- models, service, files, groups ----------------------------------------------------


def check_models(settings: Settings) -> list[Finding]:
    findings = []
    for name, model in (("Vosk model", check_vosk(settings)),
                        ("Piper voice", check_piper(settings))):
        if model.problem is None:
            findings.append(_ok(name, str(model.path)))
        else:
            findings.append(_fail(name, model.problem, model.fix))
    return findings


def check_service() -> Finding:
    if shutil.which("systemctl") is None:
        return _skip("service", "no systemctl on this machine")
    try:
        shown = subprocess.run(
            ["systemctl", "show", UNIT, "--property=LoadState,ActiveState,SubState,"
             "UnitFileState"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _skip("service", f"systemctl did not answer ({exc})")
    if shown.returncode != 0:
        return _skip("service", f"systemd is not running here "
                                f"({(shown.stderr.strip().splitlines() or ['?'])[0]})")
    props = dict(line.partition("=")[::2] for line in shown.stdout.splitlines())
    if props.get("LoadState") == "not-found":
        return _skip("service", "not installed as a service (sudo scripts/install installs it)")
    state = f"{props.get('ActiveState')} ({props.get('SubState')}), " \
            f"{props.get('UnitFileState') or 'unknown'} at boot"
    if props.get("ActiveState") == "failed":
        return _fail("service", state, "see why: journalctl -u edge-agent -e; then "
                                       "sudo systemctl restart edge-agent")
    return _ok("service", state)


def check_file_modes(settings: Settings) -> list[Finding]:
    """The config must not be writable by others; a key file must not be readable
    by every user either."""
    findings = []
    files = [(settings.source, False), (SECRETS_FILE, True)]
    if settings.cloud.api_key_file:
        files.append((Path(settings.cloud.api_key_file), True))
    for path, secret in files:
        if path is None:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            findings.append(_fail("permissions", f"{path}: cannot stat ({exc.strerror})",
                                  "run doctor with sudo"))
            continue
        mode = stat.S_IMODE(st.st_mode)
        owner = f"{_user(st.st_uid)}:{_group(st.st_gid)}"
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            findings.append(_fail("permissions", f"{path}: writable by others (mode {mode:o})",
                                  f"sudo chmod go-w {path}"))
        elif secret and mode & stat.S_IROTH:
            findings.append(_fail("permissions", f"{path}: the API key is readable by every "
                                                 f"user (mode {mode:o}, {owner})",
                                  f"sudo chmod 640 {path}; sudo chown root:edge-agent {path}"))
        else:
            findings.append(_ok("permissions", f"{path}: mode {mode:o}, {owner}"))
    return findings


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_groups(settings: Settings) -> Finding:
    """A daemon run by hand needs the audio group (and gpio for a button and LEDs);
    the service gets them from its unit (SupplementaryGroups)."""
    if os.geteuid() == 0:
        return _ok("groups", "root (the service itself runs as edge-agent in audio and gpio)")
    mine = {_group(g) for g in os.getgroups()} | {_group(os.getegid())}
    needed = ["audio"]
    if settings.gpio.enabled:
        with contextlib.suppress(KeyError):
            needed.append(grp.getgrnam("gpio").gr_name)
    missing = [g for g in needed if g not in mine]
    if missing:
        return _fail("groups", f"{_user(os.geteuid())} is not in {', '.join(missing)}",
                     f"sudo usermod -aG {','.join(missing)} $USER, then log out and in again")
    return _ok("groups", f"{_user(os.geteuid())} is in {', '.join(needed)}")


# --- the whole run ---------------------------------------------------------------------


def run(config: Path | None, *, socket_path: Path | None = None,
        listen_seconds: float = DEFAULT_LISTEN_SECONDS, out: Out = print) -> int:
    """Every check, each printed as it finishes; 1 if any failed."""
    # The findings say what the engines' own error logs would, with the fix.
    logging.disable(logging.ERROR)
    try:
        return _run(config, socket_path, listen_seconds, out)
    finally:
        logging.disable(logging.NOTSET)


def _run(config: Path | None, socket_path: Path | None, listen_seconds: float,
         out: Out) -> int:
    failed = False

    def report(*findings: Finding) -> None:
        nonlocal failed
        for finding in findings:
            failed = failed or finding.ok is False
            out(format_finding(finding))

    settings, finding = check_config(config)
    report(finding)
    key, key_source, finding = find_key(settings)
    report(finding)
    report(check_cloud(settings, key, key_source))
    socket_path = socket_path or control.find_socket(settings.service.control_socket)
    try:
        status = control.request(socket_path, "status")
    except control.ControlError as exc:
        status = None
        # Anything but "nothing listens there" means a daemon holds the devices.
        if "not running" not in str(exc):
            report(_fail("daemon", f"a daemon at {socket_path} does not answer: {exc}",
                         "sudo edge-agent doctor; if it hangs: sudo systemctl restart "
                         "edge-agent"),
                   *(_skip(check, "held by the daemon") for check in
                     ("microphone", "speaker", "wake word")))
            socket_path = None
    if status is not None:
        report(_ok("daemon", f"running, answering on {socket_path}"),
               *daemon_audio(status, socket_path))
    elif socket_path is not None:
        report(_skip("daemon", "not running: doctor opens the audio devices itself"))
        report(*asyncio.run(check_microphone_and_wake(settings, listen_seconds, out)))
        report(asyncio.run(check_speaker(settings)))
    out(f"      models directory: {install_dir(settings)} (edge-agent models list)")
    report(*check_models(settings))
    report(check_service(), *check_file_modes(settings), check_groups(settings))
    out("some checks failed: see each fix above" if failed else "all checks passed")
    return 1 if failed else 0
