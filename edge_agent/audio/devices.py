"""The one door to PyAudio: finding devices by name and choosing a format the
device supports. PortAudio errors become AudioDeviceError here.

PortAudio enumerates devices when it initialises, so every (re)open makes a
fresh ``PyAudio`` session. PortAudio counts sessions, though, and enumerates
only when none is open: while the player holds the speaker, a reopened
microphone sees the device list of the first start. ALSA names ("default",
"hw:CARD=...") still open the device that is there now; a device that was
absent when the daemon started needs a restart to be found by name.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pyaudio

from edge_agent.errors import AudioDeviceError

log = logging.getLogger(__name__)

Direction = Literal["input", "output"]

NO_DEVICE_HINT = (
    "check that the system sees a sound card (aplay -l, arecord -l), that this user is "
    "in the audio group (sudo usermod -aG audio $USER, then log in again), or set "
    "audio.input/audio.output to a .wav path to run without one")
"""What to try when PortAudio finds no device: the owner's first hour over SSH."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int

    def channels(self, direction: Direction) -> int:
        return self.max_input_channels if direction == "input" else self.max_output_channels


@dataclass(frozen=True)
class StreamFormat:
    rate: int
    channels: int


# C callbacks for the native libraries' own messages; kept referenced for the
# life of the process because the libraries hold the pointers.
_ALSA_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_char_p)
_JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


def _alsa_message(file: bytes, line: int, function: bytes, err: int, fmt: bytes) -> None:
    # Variadic in C: only the fixed arguments are read, so the text is the format.
    log.debug("ALSA %s:%d %s: %s", file.decode(errors="replace"), line,
              function.decode(errors="replace"), fmt.decode(errors="replace"))


def _jack_message(message: bytes) -> None:
    log.debug("JACK: %s", message.decode(errors="replace"))


_alsa_handler = _ALSA_HANDLER(_alsa_message)
_jack_handler = _JACK_HANDLER(_jack_message)


@functools.cache
def _quiet_native_libraries() -> None:
    """PortAudio probes every ALSA PCM and the JACK server at each start; the
    libraries print dozens of harmless lines to stderr ("Unknown PCM
    cards.pcm.rear", "jack server is not running"), which would flood the journal
    at every reconnection attempt. Send them to the debug log instead."""
    for name, setters, handler in (
        ("asound", ("snd_lib_error_set_handler",), _alsa_handler),
        ("jack", ("jack_set_error_function", "jack_set_info_function"), _jack_handler),
    ):
        path = ctypes.util.find_library(name)
        if path is None:
            continue
        try:
            library = ctypes.CDLL(path)
            for setter in setters:
                getattr(library, setter)(handler)
        except (OSError, AttributeError) as exc:
            log.debug("cannot redirect %s messages: %s", name, exc)


def open_portaudio() -> pyaudio.PyAudio:
    """A fresh PortAudio session (re-enumerates devices); terminate() it when done."""
    _quiet_native_libraries()
    try:
        return pyaudio.PyAudio()
    except Exception as exc:  # PortAudio raises OSError, or a bare Exception
        raise AudioDeviceError(f"PortAudio cannot start: {exc}") from exc


def _info(raw: dict) -> DeviceInfo:
    return DeviceInfo(
        index=int(raw["index"]),
        name=str(raw["name"]),
        max_input_channels=int(raw["maxInputChannels"]),
        max_output_channels=int(raw["maxOutputChannels"]),
        default_rate=int(raw["defaultSampleRate"]),
    )


def devices(pa: pyaudio.PyAudio) -> list[DeviceInfo]:
    return [_info(pa.get_device_info_by_index(i)) for i in range(pa.get_device_count())]


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees right now (for `edge-agent devices`)."""
    pa = open_portaudio()
    try:
        return devices(pa)
    finally:
        pa.terminate()


def find_device(pa: pyaudio.PyAudio, spec: str, direction: Direction) -> DeviceInfo:
    """``spec`` is "default" or a case-insensitive substring of a device name.
    An exact name wins over a substring, so "hw" can still pick a device named "hw"."""
    if spec.strip().lower() == "default":
        try:
            raw = (pa.get_default_input_device_info() if direction == "input"
                   else pa.get_default_output_device_info())
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(f"no default {direction} device: {NO_DEVICE_HINT}") from exc
        return _info(raw)
    usable = [d for d in devices(pa) if d.channels(direction) > 0]
    wanted = spec.strip().lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    matches = exact or [d for d in usable if wanted in d.name.lower()]
    if not matches:
        known = ", ".join(repr(d.name) for d in usable)
        if not known:
            raise AudioDeviceError(f"no {direction} device matches {spec!r}: there is none; "
                                   f"{NO_DEVICE_HINT}")
        raise AudioDeviceError(f"no {direction} device matches {spec!r} (available: {known})")
    if len(matches) > 1:
        log.info("%s device %r matches %d devices; using %r", direction, spec, len(matches),
                 matches[0].name)
    return matches[0]


def choose_format(
    pa: pyaudio.PyAudio,
    device: DeviceInfo,
    direction: Direction,
    preferred: list[StreamFormat],
) -> StreamFormat:
    """The first of ``preferred`` the device accepts, then its default rate in mono
    or stereo. Raises AudioDeviceError when none fits."""
    max_channels = device.channels(direction)
    candidates = [*preferred, StreamFormat(device.default_rate, 1),
                  StreamFormat(device.default_rate, 2), StreamFormat(48000, 2),
                  StreamFormat(44100, 2)]
    for fmt in candidates:
        if fmt.channels > max_channels:
            continue
        kwargs = {f"{direction}_device": device.index, f"{direction}_channels": fmt.channels,
                  f"{direction}_format": pyaudio.paInt16}
        try:
            if pa.is_format_supported(fmt.rate, **kwargs):
                return fmt
        except ValueError:
            continue
    raise AudioDeviceError(f"{direction} device {device.name!r} accepts none of "
                           f"{[(f.rate, f.channels) for f in candidates]} as int16")


class OpenStream:
    """A PortAudio session with one callback-mode stream on it, created stopped."""

    def __init__(self, pa: pyaudio.PyAudio, stream: pyaudio.Stream, fmt: StreamFormat,
                 description: str) -> None:
        self.pa = pa
        self.stream = stream
        self.format = fmt
        self.description = description
        self._closed = False

    def start(self) -> None:
        try:
            self.stream.start_stream()
        except OSError as exc:
            self.close()
            raise AudioDeviceError(f"cannot start {self.description}: {exc}") from exc

    @property
    def active(self) -> bool:
        """False once PortAudio gave up on the device (unplugged, failed)."""
        try:
            return self.stream.is_active()
        except OSError:
            return False

    def close(self, *, drain: bool = False) -> None:
        """Safe twice: a second terminate() would end another PortAudio session.
        ``drain`` lets an output play what the device still holds (its last period
        or two) instead of dropping that tail of the answer."""
        if self._closed:
            return
        self._closed = True
        try:
            if drain and self.stream.is_active():
                self.stream.stop_stream()
            self.stream.close()
        except OSError as exc:
            log.debug("closing %s: %s", self.description, exc)
        finally:
            self.pa.terminate()


def open_stream(
    spec: str,
    direction: Direction,
    callback: Callable[..., tuple[bytes | None, int]],
    *,
    period_seconds: float,
    preferred: list[StreamFormat],
    forced: StreamFormat | None = None,
) -> OpenStream:
    """Open the device named by ``spec`` in ``forced`` format, else the first of
    ``preferred`` (then the device's own) it accepts. The stream is created
    stopped: the caller sets up what its callback needs, then starts it. The
    session is terminated on every failure, so a retry loop leaks nothing."""
    pa = open_portaudio()
    try:
        device = find_device(pa, spec, direction)
        fmt = forced or choose_format(pa, device, direction, preferred)
        stream = pa.open(
            format=pyaudio.paInt16, channels=fmt.channels, rate=fmt.rate,
            input=direction == "input", output=direction == "output",
            input_device_index=device.index if direction == "input" else None,
            output_device_index=device.index if direction == "output" else None,
            frames_per_buffer=round(fmt.rate * period_seconds),
            stream_callback=callback, start=False)
    except AudioDeviceError:
        pa.terminate()
        raise
    except Exception as exc:  # PortAudio raises OSError or ValueError
        pa.terminate()
        raise AudioDeviceError(f"cannot open {direction} {spec!r}: {exc}") from exc
    return OpenStream(pa, stream, fmt, f"{device.name!r} at {fmt.rate} Hz x{fmt.channels}")
