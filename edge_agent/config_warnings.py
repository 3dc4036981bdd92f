"""What `check-config` warns about: settings that are valid but will not work
where the daemon runs. An admin checks the file as root in a login shell; the
service runs sandboxed (systemd/edge-agent.service) as its own user, on whatever
sound cards and GPIO header the device has.

Each warning is "FILE: key: what and the fix", like a config problem, so that
``configfile.locate`` gives it the key's line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from edge_agent.config import Settings, wake_model_name
from edge_agent.errors import AudioDeviceError

UNIT = "edge-agent.service"
HIDDEN_FROM_SERVICE = {
    "/home": "ProtectHome=yes",
    "/root": "ProtectHome=yes",
    "/run/user": "ProtectHome=yes",
    "/tmp": "PrivateTmp=yes",
    "/var/tmp": "PrivateTmp=yes",
}
"""Where the unit's sandbox shows the service an empty directory instead."""
SERVICE_WRITABLE = ("/var/lib/edge-agent", "/var/log/edge-agent", "/run/edge-agent")
"""The unit's StateDirectory, LogsDirectory and RuntimeDirectory: under
ProtectSystem=strict everything else is read-only to the service."""
HEADER_BCM_PINS = range(28)
"""BCM numbers of the GPIO pins on the Pi's 40-pin header (GPIO0 to GPIO27)."""
HEADER_POWER_PINS = frozenset({1, 2, 4, 6, 9, 14, 17, 20, 25, 30, 34, 39})
"""Physical header pins that carry power or ground, not a GPIO."""
SOUND_SERVER_HOOKS = {
    "99-pipewire-default.conf": "PipeWire",
    "99-pulse.conf": "PulseAudio",
}
"""ALSA config files (in ALSA_CONF_DIRS) that route ALSA's "default" to a desktop
sound server: it runs in the desktop user's session, which a system service
cannot reach."""
ALSA_CONF_DIRS = (Path("/etc/alsa/conf.d"),)
_BCM_NAME = re.compile(r"^(?:GPIO|BCM)(\d+)$", re.IGNORECASE)
_BOARD_NAME = re.compile(r"^(?:BOARD|J8:)(\d+)$", re.IGNORECASE)


def config_warnings(s: Settings, where: str) -> list[str]:
    """Every warning for settings ``s`` read from ``where``."""
    return [f"{where}: {key}: {message}" for key, message in (
        *_sandbox(s), *_plain_http(s), *_sound_server(s), *_devices(s), *_pins(s))]


def _read_paths(s: Settings) -> Iterator[tuple[str, str]]:
    """(key, path) of every file or directory the service opens."""
    yield "offline.vosk_model", s.offline.vosk_model
    yield "offline.piper_voice", s.offline.piper_voice
    yield "cloud.api_key_file", s.cloud.api_key_file
    if s.mqtt.host:  # the service opens these only with MQTT on (and the CA only with TLS)
        yield "mqtt.password_file", s.mqtt.password_file
        if s.mqtt.tls:
            yield "mqtt.ca_file", s.mqtt.ca_file
    for model in s.wake.models:
        if model != wake_model_name(model):  # a file, not a bundled name
            yield "wake.models", model
    for name in ("wake", "end", "error", "offline"):
        value = getattr(s.earcons, name)
        if value not in ("builtin", "off"):
            yield f"earcons.{name}", value
    if s.audio.input.lower().endswith(".wav"):
        yield "audio.input", s.audio.input


def _written_paths(s: Settings) -> Iterator[tuple[str, str]]:
    """(key, path) of every file or directory the service writes."""
    if s.audio.output.lower().endswith(".wav"):
        yield "audio.output", s.audio.output
    yield "log.events", s.log.events
    yield "service.state_dir", s.service.state_dir
    yield "service.control_socket", s.service.control_socket


def _sandbox(s: Settings) -> Iterator[tuple[str, str]]:
    written = [(k, p) for k, p in _written_paths(s) if p]
    for key, value in [*((k, p) for k, p in _read_paths(s) if p), *written]:
        path = Path(value).expanduser().absolute()
        hidden = next((d for d in HIDDEN_FROM_SERVICE if path.is_relative_to(d)), None)
        if hidden:
            yield key, (f"{value} is under {hidden}, which the service sees as an empty "
                        f"directory of its own ({HIDDEN_FROM_SERVICE[hidden]} in {UNIT}); "
                        "use a place under /var/lib/edge-agent or /etc/edge-agent")
        elif (key, value) in written and not any(
                path.is_relative_to(d) for d in SERVICE_WRITABLE):
            yield key, (f"{value} is outside the directories the service may write "
                        f"({', '.join(SERVICE_WRITABLE)}; ProtectSystem=strict in {UNIT}), "
                        "so writing it fails as a read-only file system")


def _plain_http(s: Settings) -> Iterator[tuple[str, str]]:
    url = urlsplit(s.cloud.base_url)
    if url.scheme == "http" and s.cloud.enabled and not _is_loopback(url.hostname or ""):
        yield "cloud.base_url", (f"plain http to {url.hostname}: the API key and everything "
                                 "said travel unencrypted; use https:// (http is fine only "
                                 "for a server on this device, 127.0.0.1 or localhost)")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _sound_server(s: Settings) -> Iterator[tuple[str, str]]:
    """"default" that ALSA hands to a desktop sound server (Raspberry Pi OS desktop
    images route it to PipeWire): works for the admin in a login shell, not for
    the service, which then hears nothing."""
    server = next((name for folder in ALSA_CONF_DIRS for hook, name in SOUND_SERVER_HOOKS.items()
                   if (folder / hook).exists()), None)
    if server is None:
        return
    for key, value in (("audio.input", s.audio.input), ("audio.output", s.audio.output)):
        if value.strip().lower() == "default":
            yield key, (f"ALSA's default goes to {server} here, which the {UNIT} user "
                        "cannot reach; name the card instead, e.g. \"plughw:CARD=seeed2micvoicec\" "
                        "(`edge-agent devices` and `arecord -L` list them)")


def _devices(s: Settings) -> Iterator[tuple[str, str]]:
    """A device name no sound card matches now (it may be unplugged, or misspelt)."""
    wanted = [(key, direction, name) for key, direction, name in (
        ("audio.input", "input", s.audio.input), ("audio.output", "output", s.audio.output))
        if name.strip().lower() != "default" and not name.lower().endswith(".wav")]
    if not wanted:
        return
    from edge_agent.audio.devices import find_device, open_portaudio  # PortAudio only here

    try:
        pa = open_portaudio()
    except (AudioDeviceError, OSError) as exc:
        yield "audio", f"cannot list the audio devices to check the names: {exc}"
        return
    try:
        for key, direction, name in wanted:
            try:
                find_device(pa, name, direction)
            except AudioDeviceError as exc:
                yield key, f"{exc}; `edge-agent devices` lists them (unplugged?)"
    finally:
        pa.terminate()


def _pins(s: Settings) -> Iterator[tuple[str, str]]:
    if not s.gpio.enabled:
        return
    pins = [("gpio.button", s.gpio.button)] if s.gpio.button != "" else []
    if s.gpio.led_kind != "none":
        pins += [("gpio.led_pins", pin) for pin in s.gpio.led_pins]
    for key, pin in pins:
        problem = _pin_problem(pin)
        if problem:
            yield key, problem


def _pin_problem(pin: int | str) -> str | None:
    """Why ``pin`` is not a GPIO on the 40-pin header, or None (unknown names too:
    gpiozero has more schemes than we check)."""
    if isinstance(pin, str):
        board = _BOARD_NAME.match(pin.strip())
        if board:
            number = int(board.group(1))
            if not 1 <= number <= 40:
                return f"{pin!r}: the header has pins 1 to 40"
            if number in HEADER_POWER_PINS:
                return f"{pin!r} is a power or ground pin, not a GPIO"
            return None
        bcm = _BCM_NAME.match(pin.strip())
        if not bcm:
            return None
        pin = int(bcm.group(1))
    if pin not in HEADER_BCM_PINS:
        return (f"GPIO{pin} is not on the Pi's 40-pin header (GPIO0 to GPIO27, BCM "
                "numbers)")
    return None
