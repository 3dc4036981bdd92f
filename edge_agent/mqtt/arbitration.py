"""One answer per home: speakers of a group claim each wake word they detect on
a shared topic, wait one window, and only the best claim answers.

The best claim is the loudest phrase (the speaker nearest the talker), then the
higher score, then the greater device id, so every speaker ranks the same
claims the same way. Each speaker decides on the claims that REACHED it within
one window either side of the moment it heard the phrase, by its own monotonic
clock: Pis whose wall clocks disagree still agree, as no timestamps are
compared. The window runs from when the audio was captured, not from when the
detector got to it, so a speaker whose detector lags does not wait longer.

A speaker so late that the others decided without its claim would answer
alongside them; so the winner also says "answering", and a speaker about to
answer yields to an "answering" it received for the same phrase. A speaker in
a conversation takes a wake word at once (a barge-in meant for it) and says
"answering" too, so the idle ones stay idle.
Without a connection the speaker answers at once, as a lone speaker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edge_agent.events import EventBus
    from edge_agent.wake import WakeDetection

log = logging.getLogger(__name__)

CLAIMS_KEPT = 64
"""Messages remembered (a window's worth from a whole house, with room to spare)."""
MAX_CLAIM_BYTES = 1024
LATE_GRACE = 0.03
"""A speaker past its window still waits this long: another's "answering",
sent at the end of its own window, is on its way."""
KINDS = ("claim", "answering")


class ClaimChannel(Protocol):
    """The broker link as the arbiter uses it."""

    @property
    def connected(self) -> bool: ...
    async def publish_claim(self, payload: bytes) -> None: ...


@dataclass(frozen=True)
class Claim:
    speaker: str
    claim_id: str
    model: str
    score: float
    level_dbfs: float
    kind: str = "claim"
    """"claim" when detected; "answering" once the speaker won."""

    def rank(self) -> tuple[float, float, str]:
        return (self.level_dbfs, self.score, self.speaker)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Claim:
        """Raises ValueError for anything but a well-formed claim."""
        if len(payload) > MAX_CLAIM_BYTES:
            raise ValueError(f"claim of {len(payload)} bytes")
        try:
            data = json.loads(payload)
        except RecursionError:
            raise ValueError("claim nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("claim is not a JSON object")
        try:
            claim = cls(str(data["speaker"]), str(data["claim_id"]), str(data["model"]),
                        float(data["score"]), float(data["level_dbfs"]),
                        str(data.get("kind", "claim")))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"claim lacks or mistypes {exc}") from None
        if not (math.isfinite(claim.score) and math.isfinite(claim.level_dbfs)):
            raise ValueError("claim with a non-finite number")
        if claim.kind not in KINDS:
            raise ValueError(f"claim of unknown kind {claim.kind[:20]!r}")
        return claim


class GroupArbiter:
    """The agent's WakeArbiter for a speaker in a group."""

    def __init__(self, speaker: str, window: float, channel: ClaimChannel,
                 bus: EventBus) -> None:
        self.speaker = speaker
        self.window = window
        self._channel = channel
        self._bus = bus
        self._heard: deque[tuple[float, Claim]] = deque(maxlen=CLAIMS_KEPT)
        self._sending: set[asyncio.Task] = set()

    def on_claim(self, payload: bytes) -> None:
        """A message on the group's topic (our own claims come back too)."""
        try:
            claim = Claim.from_json(payload)
        except ValueError as exc:
            log.warning("ignored a malformed wake claim: %s", exc)
            return
        if claim.speaker != self.speaker:
            self._heard.append((time.monotonic(), claim))

    async def answer(self, detection: WakeDetection, *, level_dbfs: float,
                     heard_at: float, engaged: bool) -> bool:
        if not self._channel.connected:
            return True  # no broker: answer as if alone, never stay silent
        detected = time.monotonic()
        own = Claim(self.speaker, uuid.uuid4().hex[:12], detection.model,
                    round(detection.score, 4), round(level_dbfs, 2))
        if engaged:
            # A barge-in on the conversation this speaker holds: at once, and the
            # others, idle, are told to stay so.
            self._send(dataclasses.replace(own, kind="answering"))
            return True
        try:
            await asyncio.wait_for(self._channel.publish_claim(own.to_json()), self.window)
        except Exception as exc:  # a broker that fails now must not cost the answer
            log.warning("wake claim not sent (%s); answering alone", exc)
            return True
        deadline = heard_at + self.window
        if time.monotonic() > deadline - LATE_GRACE:
            deadline = time.monotonic() + LATE_GRACE
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        since = heard_at - self.window
        claims = [c for t, c in self._heard if since <= t and c.kind == "claim"]
        answering = [c for t, c in self._heard if since <= t and c.kind == "answering"]
        best = max([own, *claims], key=Claim.rank)
        won = best is own and not answering
        if won:
            self._send(dataclasses.replace(own, kind="answering"))
        winner = answering[0].speaker if answering else best.speaker
        self._bus.emit("wake_arbitration", won=won, claims=1 + len(claims), winner=winner,
                       waited_ms=round((time.monotonic() - detected) * 1000, 1),
                       lag_ms=round((detected - heard_at) * 1000, 1),
                       level_dbfs=own.level_dbfs)
        log.info("wake word %s: %s (%d claims, %s answers)", detection.model,
                 "answering" if won else "left to another speaker", 1 + len(claims), winner)
        return won

    def _send(self, claim: Claim) -> None:
        """In the background: the answer must not wait for the broker."""
        async def send() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.publish_claim(claim.to_json()),
                                       self.window)

        task = asyncio.get_running_loop().create_task(send(), name="wake-answering")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
