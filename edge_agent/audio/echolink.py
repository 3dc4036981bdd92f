"""The echo canceller and the test room, built once from the settings and
shared by the speaker (which feeds them), the microphone (which they clean or
make hear the speaker) and the wake word (which trusts a converged canceller)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge_agent.audio.capture import is_wav_spec
from edge_agent.audio.echo import EchoCanceller, EchoReference
from edge_agent.audio.ring import RingBuffer
from edge_agent.audio.room import Room, RoomResponse
from edge_agent.config import AudioSettings, EchoSettings
from edge_agent.errors import AudioDeviceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EchoLink:
    canceller: EchoCanceller | None = None
    """None when echo.cancel is off or libspeexdsp is missing."""
    room: Room | None = None
    """The test room joining a .wav output to a .wav input, or None."""

    @classmethod
    def build(cls, echo: EchoSettings, audio: AudioSettings, ring: RingBuffer) -> EchoLink:
        """A missing library is logged, not fatal: the speaker then runs as before,
        with the raised wake threshold while it talks."""
        room = None
        if echo.room_delay_ms:
            if is_wav_spec(audio.input) and is_wav_spec(audio.output):
                room = Room(RoomResponse(delay_s=echo.room_delay_ms / 1000,
                                         gain_db=echo.room_gain_db))
            else:
                log.warning("echo.room_delay_ms needs .wav audio.input and audio.output; "
                            "no test room")
        canceller = None
        if echo.cancel:
            try:
                canceller = EchoCanceller(ring, tail_ms=echo.tail_ms,
                                          raw_seconds=audio.buffer_seconds)
            except AudioDeviceError as exc:
                log.error("%s", exc)
        return cls(canceller, room)

    @property
    def reference(self) -> EchoReference | None:
        return self.canceller.reference if self.canceller is not None else None

    @property
    def raw(self) -> RingBuffer | None:
        """The microphone before cancellation (diagnostics), or None."""
        return self.canceller.raw if self.canceller is not None else None

    def status(self) -> dict[str, object]:
        """For `edge-agent status`: is it on, has it converged, has it diverged."""
        c = self.canceller
        room = self.room.response.delay_s * 1000 if self.room is not None else None
        if c is None:
            return {"cancelling": False, "test_room_delay_ms": room}
        return {"cancelling": True, "converged": c.converged, "diverged": c.diverged,
                "cancelled_s": round(c.processed / c.raw.rate, 1),
                "reanchors": c.reference.reanchors, "test_room_delay_ms": room}

    def ready(self) -> bool:
        """The canceller has converged and not diverged since (any thread)."""
        return self.canceller is not None and self.canceller.ready


NO_ECHO = EchoLink()
"""Neither canceller nor test room (a device opened on its own)."""
