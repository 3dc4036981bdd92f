"""Real synthesized speech for tests: Piper (joe voice) and espeak-ng, at 16 kHz
mono int16, cached on disk so each phrase is made once (edge_agent.tools.voices)."""

from edge_agent.tools.voices import (
    CACHE,
    RATE,
    espeak,
    mix_snr,
    noise,
    piper,
    read_wav,
    silence,
    write_wav,
)

__all__ = ["CACHE", "RATE", "espeak", "mix_snr", "noise", "piper", "read_wav", "silence",
           "write_wav"]
