"""OpenAI's Realtime transcription WebSocket on 127.0.0.1: FakeCloud's sibling.

It speaks what edge_agent.cloud.realtime uses: ``session.update`` (answered with
``session.updated``), ``input_audio_buffer.append`` (base64 PCM16 24 kHz) and
``input_audio_buffer.commit``, answered with ``input_audio_buffer.committed``,
``conversation.item.input_audio_transcription.delta`` (one per word) and
``...completed`` ``latency`` seconds after the commit.

Faults share FakeCloud's vocabulary (``fail(kind)``, see ``FAULTS``); a refused
connection is ``with realtime.offline():``. Every connection is recorded
(``sessions``): headers, the session config, the audio of each commit, the
events received, and when it closed.

    with FakeRealtime(transcript="what time is it", latency=0.1) as realtime:
        settings = cloud.settings(stt_streaming=True, stt_streaming_url=realtime.url)
        realtime.fail("error_event")

The server is websockets' threaded server on a background thread.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response
from websockets.sync.server import Server, ServerConnection, serve

from edge_agent.testbed.fakecloud import Fault, LoopbackServer, ScriptedRecognizer

RATE = 24000
FAULTS = (
    "status",          # the handshake is refused: status=401 (or 404, 500...)
    "error_event",     # an "error" event instead of the transcript
    "malformed_json",  # a truncated JSON event instead of the transcript
    "stall_first",     # nothing at all after the commit for `seconds`
    "stall_mid",       # the deltas, then nothing for `seconds` (no completed)
    "reset_mid",       # a TCP reset after `after` appended chunks
)
STOP_GRACE = 3.0
"""stop() waits this long for the server to close its connections (websockets
waits up to close_timeout, 1 s, for each client), then shuts their sockets."""


@dataclass
class Session:
    """One connection, as the device used it."""

    path: str
    headers: dict[str, str]
    """Lower-case names, as received (Authorization included)."""
    fault: str | None = None
    config: dict[str, Any] | None = None
    """The ``session`` of the last session.update."""
    events: list[str] = field(default_factory=list)
    """Types of the client's events, in order."""
    segments: list[np.ndarray] = field(default_factory=list)
    """The audio of each commit (int16, 24 kHz)."""
    committed_at: list[float] = field(default_factory=list)
    completed_at: list[float] = field(default_factory=list)
    """perf_counter() of each commit received and each transcript sent."""
    closed: threading.Event = field(default_factory=threading.Event)

    @property
    def appended(self) -> np.ndarray:
        return np.concatenate(self.segments) if self.segments else np.zeros(0, np.int16)


class FakeRealtime(LoopbackServer, ScriptedRecognizer):
    """The scripted server. Attributes may be changed between sessions."""

    def __init__(self, *, transcript: str | Callable[[np.ndarray], str] = "what time is it",
                 latency: float = 0.0) -> None:
        self.transcript = transcript
        """Transcript of every commit, or a function of its audio (24 kHz)."""
        self.latency = latency
        """Seconds from a commit to its completed transcript (deltas in between)."""
        self.early_delta = ""
        """Sent as a delta of the coming item at a segment's first append, as a live
        model (gpt-live-transcribe) sends words before the commit; "": none."""
        self.sessions: list[Session] = []
        self._transcripts: list[str] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._connections: set[ServerConnection] = set()
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> FakeRealtime:
        """Listen (on an ephemeral port the first time, then on the same one)."""
        self._server = serve(self._handle, "127.0.0.1", self.port,
                             process_request=self._process_request, ping_interval=None,
                             close_timeout=1)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"fakerealtime:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every connection: clients now get "refused".
        Never hangs: a connection still open after STOP_GRACE (a client that
        left its socket open) has its socket shut down, with a warning."""
        server, self._server = self._server, None
        if server is not None:
            shutdown = threading.Thread(target=server.shutdown, daemon=True,
                                        name=f"fakerealtime-stop:{self.port}")
            shutdown.start()
            shutdown.join(STOP_GRACE)
            if shutdown.is_alive():
                with self._lock:
                    stuck = list(self._connections)
                warnings.warn(f"fakerealtime: {len(stuck)} connection(s) still open"
                              f" {STOP_GRACE} s after stop(); shutting their sockets",
                              stacklevel=2)
                for conn in stuck:
                    with contextlib.suppress(OSError):
                        conn.socket.shutdown(socket.SHUT_RDWR)
                shutdown.join(STOP_GRACE)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime?intent=transcription"

    # --- scripting ----------------------------------------------------------------------

    def fail(self, kind: str, *, times: int | None = 1, **params: Any) -> None:
        """Break the next ``times`` sessions with ``kind`` (None: all of them)."""
        if kind not in FAULTS:
            raise ValueError(f"fault {kind!r}: expected one of {FAULTS}")
        with self._lock:
            self._faults.append(Fault("realtime", kind, times, **params))

    def wait_closed(self, count: int = 1, timeout: float = 10.0) -> Session:
        """Block until ``count`` sessions were opened and the last of them closed."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                session = self.sessions[count - 1] if len(self.sessions) >= count else None
            if session is not None and session.closed.wait(max(0.0, deadline - time.monotonic())):
                return session
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.sessions)} sessions, waited for {count} closed")
            time.sleep(0.005)

    # --- the server's side --------------------------------------------------------------

    def _take_fault(self) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times is None or fault.times > 0:
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _process_request(self, conn: ServerConnection, request: HttpRequest) -> Response | None:
        session = Session(request.path, {k.lower(): v for k, v in request.headers.raw_items()})
        fault = self._take_fault()
        session.fault = fault.kind if fault else None
        conn.fake_session, conn.fake_fault = session, fault  # type: ignore[attr-defined]
        with self._lock:
            self.sessions.append(session)
        if fault is not None and fault.kind == "status":
            session.closed.set()
            return conn.respond(fault.status, json.dumps(
                {"error": {"message": f"fake status {fault.status}", "code": "fake"}}))
        return None

    def _handle(self, conn: ServerConnection) -> None:
        session: Session = conn.fake_session  # type: ignore[attr-defined]
        fault: Fault | None = conn.fake_fault  # type: ignore[attr-defined]
        buffer, appends, items = bytearray(), 0, 0
        with self._lock:
            self._connections.add(conn)
        try:
            for message in conn:
                event = json.loads(message)
                kind = event.get("type")
                session.events.append(kind)
                if kind == "session.update":
                    session.config = event.get("session")
                    conn.send(json.dumps({"type": "session.updated",
                                          "session": session.config}))
                elif kind == "input_audio_buffer.append":
                    if not buffer and self.early_delta:
                        conn.send(json.dumps({
                            "type": "conversation.item.input_audio_transcription.delta",
                            "item_id": f"item_{items + 1}", "delta": self.early_delta}))
                    buffer += base64.b64decode(event["audio"])
                    appends += 1
                    if fault is not None and fault.kind == "reset_mid" and appends >= fault.after:
                        _reset(conn)
                        return
                elif kind == "input_audio_buffer.commit":
                    items += 1
                    audio = np.frombuffer(bytes(buffer), "<i2").astype(np.int16)
                    buffer.clear()
                    session.segments.append(audio)
                    session.committed_at.append(time.perf_counter())
                    item = f"item_{items}"
                    conn.send(json.dumps({"type": "input_audio_buffer.committed",
                                          "item_id": item}))
                    threading.Thread(target=self._transcribe, daemon=True,
                                     args=(conn, session, fault, item, audio)).start()
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.discard(conn)
            session.closed.set()

    def _transcribe(self, conn: ServerConnection, session: Session, fault: Fault | None,
                    item: str, audio: np.ndarray) -> None:
        """Answer one commit, from its own thread so audio keeps being read meanwhile."""
        with contextlib.suppress(ConnectionClosed, OSError):
            text = self._next_transcript(audio)
            kind = fault.kind if fault is not None else None
            if kind == "stall_first":
                time.sleep(fault.seconds)  # type: ignore[union-attr]
                return
            words = text.split()
            step = self.latency / (len(words) + 1)
            for i, word in enumerate(words):
                time.sleep(step)
                conn.send(json.dumps({
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item, "delta": word if i == 0 else " " + word}))
            time.sleep(step)
            if kind == "stall_mid":
                time.sleep(fault.seconds)  # type: ignore[union-attr]
                return
            if kind == "error_event":
                conn.send(json.dumps({"type": "error", "error": {
                    "type": "server_error", "code": "fake_error",
                    "message": "The fake server failed on purpose."}}))
                return
            completed = json.dumps({
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item, "transcript": text})
            if kind == "malformed_json":
                completed = completed[:-4]
            # Stamped before it leaves: a client may answer it before send returns.
            session.completed_at.append(time.perf_counter())
            conn.send(completed)


def _reset(conn: ServerConnection) -> None:
    """A TCP reset (SO_LINGER 0), as a crashing proxy would send."""
    with contextlib.suppress(OSError):
        conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.socket.close()
