"""The audio front end: capture into one ring buffer on one sample clock,
playback on one kept-open output, and .wav files standing in for both."""

from edge_agent.audio.capture import Microphone
from edge_agent.audio.devices import DeviceInfo, list_devices
from edge_agent.audio.playback import PlaybackStream, Player
from edge_agent.audio.ring import SAMPLE_RATE, RingBuffer, RingReader
from edge_agent.audio.wavfile import WavReader, WavWriter

__all__ = [
    "SAMPLE_RATE",
    "DeviceInfo",
    "Microphone",
    "PlaybackStream",
    "Player",
    "RingBuffer",
    "RingReader",
    "WavReader",
    "WavWriter",
    "list_devices",
]
