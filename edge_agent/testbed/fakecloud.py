"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks what the daemon uses: ``POST /v1/audio/transcriptions`` (multipart WAV
in, JSON out), ``POST /v1/chat/completions`` (``stream=True``: real SSE
``chat.completion.chunk`` events, text and tool calls, then ``[DONE]``; without
it one ``chat.completion`` once every token is "written"),
``POST /v1/audio/speech`` (raw s16le 24 kHz mono PCM sent chunk by chunk as it
is "synthesized") and ``GET /v1/models``.

Behaviour is scripted (transcripts, replies, tool calls, audio), slowed down on
purpose (``Latency``) and broken on purpose (``fail(stage, kind)``, see
``FAULTS``; a refused connection is ``with cloud.offline():`` or ``stop()``).
Every request is recorded (``requests``, ``requests_for(stage)``): headers,
body, uploaded audio, when it arrived and was answered, and whether the client
closed the stream early (``Request.wait()`` blocks until the exchange is over).

    with FakeCloud(reply="It is sunny.") as cloud:
        settings = cloud.settings()          # CloudSettings pointing here
        cloud.fail("llm", "status", status=503, times=1)
        ...
        assert cloud.requests[-1].model == "gpt-4o-mini"

The server is stdlib ``ThreadingHTTPServer`` on a background thread, so it
serves asyncio tests, threads and benchmarks alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import io
import itertools
import json
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import numpy as np

from edge_agent.config import CloudSettings, CloudTimeouts

KEY_ENV = "OPENAI_API_KEY"
FAKE_KEY = "sk-fakecloud-test"

TTS_RATE = 24000
"""OpenAI's ``response_format="pcm"``: signed 16-bit little-endian, 24 kHz, mono."""
STAGES = ("stt", "llm", "tts", "models")
FAULTS = (
    "status",          # HTTP error: status=500 (or 503, 401...), JSON error body
    "rate_limit",      # 429 with Retry-After: retry_after seconds
    "disconnect",      # the connection is closed (FIN) without any response
    "stall_first",     # nothing at all for `seconds` (headers included)
    "stall_mid",       # part of the body, nothing for `seconds`, then the rest
    "reset_mid",       # part of the body, then a TCP reset
    "truncate",        # part of the body, then a clean end (llm: no finish_reason, no [DONE])
    "malformed_sse",   # llm: an event whose data is not JSON at all
    "malformed_json",  # llm: a truncated JSON chunk; stt: a truncated JSON body
    "wrong_format",    # tts: variant="wav" (RIFF), "mp3" (audio/mpeg), "mislabelled" (pcm as mpeg)
    "captive_portal",  # 200 text/html login page, as hotel or café Wi-Fi answers everything
    "endless",         # a stream that never ends, sent as fast as the client reads it;
                       # llm: variant="text" (words), "empty" (empty deltas), "tool" (one
                       # tool call's arguments); tts: PCM forever
)
_PATHS = {
    "/v1/audio/transcriptions": "stt",
    "/v1/chat/completions": "llm",
    "/v1/audio/speech": "tts",
    "/v1/models": "models",
}


@dataclass(frozen=True)
class ToolCall:
    """A tool call the scripted model makes instead of answering in text."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str = ""


Reply = str | list[ToolCall]
"""A scripted LLM answer: text, or tool calls (the client runs them and asks again)."""


@dataclass
class Latency:
    """Injected per-stage delays, in seconds (0 everywhere: as fast as possible)."""

    stt: float = 0.0
    """From the end of the upload to the JSON transcript."""
    llm_first_token: float = 0.0
    llm_tokens_per_second: float = 0.0
    """Rate of the following tokens (0: all at once)."""
    tts_first_byte: float = 0.0
    tts_rtf: float = 0.0
    """Real-time factor: seconds spent per second of audio after the first byte (0: instant)."""


@dataclass
class Fault:
    stage: str
    kind: str
    times: int | None
    """Requests left to break (None: every request)."""
    status: int = 500
    retry_after: float | str = 1
    seconds: float = 30.0
    after: int = 1
    """For faults mid-stream (stall_mid, reset_mid, truncate, malformed_*): tokens (llm)
    or audio chunks (tts) sent before the break."""
    variant: str = "wav"


@dataclass
class Request:
    """What the device sent, and how the exchange ended."""

    stage: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-case names, every header as received (Authorization included)."""
    body: bytes
    json: dict[str, Any] | None = None
    form: dict[str, str] = field(default_factory=dict)
    """Multipart text fields (model, language, response_format...)."""
    audio: np.ndarray | None = None
    """The uploaded audio decoded to int16 samples (stt)."""
    audio_format: dict[str, Any] | None = None
    """filename, content_type, rate, channels, sample_width, or error when it is no WAV."""
    client_port: int = 0
    """The client's TCP port: equal ports mean a kept-alive connection was reused."""
    fault: str | None = None
    status: int | None = None
    closed_early: bool = False
    """The client closed the connection before the response was complete."""
    sent: int = 0
    """Body bytes written by an ``endless`` fault so far (how fast the client reads)."""
    received_at: float = 0.0
    """time.perf_counter() when the whole request had arrived."""
    responded_at: float | None = None
    """time.perf_counter() when the response headers went out (the first data follows at
    once): a client's time minus ``responded_at - received_at`` is the client's overhead."""
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def model(self) -> str | None:
        if self.json is not None:
            return self.json.get("model")
        return self.form.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.json or {}).get("messages", []))

    def wait(self, timeout: float = 10.0) -> Request:
        """Block until the server has finished this exchange (use from a thread)."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"{self.path} still in progress after {timeout} s")
        return self


class _ClientGoneError(Exception):
    """The client closed the connection while we were answering."""


class _DroppedError(Exception):
    """We dropped the connection on purpose (an injected fault)."""


def tone(seconds: float, *, rate: int = TTS_RATE, freq: float = 440.0) -> np.ndarray:
    """A sine tone at half scale, int16: the default "voice"."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 16000).astype(np.int16)


def tokens(text: str) -> list[str]:
    """Split a reply the way models stream it: a word with its leading space."""
    return re.findall(r"\s*\S+", text) or [text]


class LoopbackServer:
    """What every fake server does with its own ``start`` and ``stop``: a context
    manager, and a block in which it refuses connections on the same port."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def offline(self) -> Iterator[None]:
        """Refuse connections inside the block, then serve again on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScriptedRecognizer:
    """What a fake recognizer answers: queued transcripts first, in order, then
    ``transcript`` (a text, or a function of the audio). The batch and the
    streaming fake share it; each sets the three attributes."""

    transcript: str | Callable[[np.ndarray], str]
    _transcripts: list[str]
    _lock: threading.Lock

    def queue_transcripts(self, *texts: str) -> None:
        """The next transcriptions answer these, in order, then ``transcript`` again."""
        with self._lock:
            self._transcripts.extend(texts)

    def _next_transcript(self, audio: np.ndarray) -> str:
        with self._lock:
            if self._transcripts:
                return self._transcripts.pop(0)
        return self.transcript(audio) if callable(self.transcript) else self.transcript


class FakeCloud(LoopbackServer, ScriptedRecognizer):
    """The scripted server. Attributes may be changed between requests."""

    def __init__(
        self,
        *,
        transcript: str | Callable[[np.ndarray], str] = "what time is it",
        reply: Reply | Callable[[dict[str, Any]], Reply] = "It is a fine day.",
        speech: Callable[[str], np.ndarray] | None = None,
        seconds_per_char: float = 0.03,
        latency: Latency | None = None,
        tts_chunk_seconds: float = 0.05,
        tls: bool = False,
    ) -> None:
        self.transcript = transcript
        """Transcript of every request, or a function of the uploaded samples."""
        self.reply = reply
        """Default answer, or a function of the request JSON (history, tool results...)."""
        self.speech = speech or (lambda text: tone(max(0.1, len(text) * seconds_per_char)))
        """Audio (int16, 24 kHz) for a text; by default a tone as long as the text."""
        self.latency = latency or Latency()
        self.tts_chunk_seconds = tts_chunk_seconds
        self.requests: list[Request] = []
        self._transcripts: list[str] = []
        self._replies: list[Reply] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.tool_call_index = True
        """Number streamed tool calls and split their arguments, as OpenAI does; False
        sends each call whole without index or id, as some compatible servers do."""
        self.tls = tls
        """Serve https with a self-signed certificate for 127.0.0.1 (``cert_file``):
        clients trust it through SSL_CERT_FILE, as they would a private CA."""
        self.cert_file: Path | None = None
        self._tls_context: ssl.SSLContext | None = None

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> FakeCloud:
        """Listen (on an ephemeral port the first time, then on the same one).

        Also sets OPENAI_API_KEY (the default cloud.api_key_env) to a fake key: the
        daemon sends no request without a key, and daemons started against this
        server (in this process or a child) find this one, never an owner's real key."""
        os.environ[KEY_ENV] = FAKE_KEY
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), self._handler_class())
        if self.tls:
            # The handshake runs in the connection's own thread (see _Handler.setup),
            # so a slow or broken client never blocks accepting the others.
            server.socket = self._tls().wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False)
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fakecloud:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection: clients now get "refused"."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:
            directory = Path(tempfile.mkdtemp(prefix="fakecloud-tls-"))
            self.cert_file, key = directory / "cert.pem", directory / "key.pem"
            # P-256, as large API front ends use; valid for the loopback address only.
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                 "/CN=fakecloud", "-addext", "subjectAltName=IP:127.0.0.1",
                 "-keyout", str(key), "-out", str(self.cert_file)],
                check=True, capture_output=True)
            self._tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls_context.load_cert_chain(self.cert_file, key)
        return self._tls_context

    def settings(self, **overrides: Any) -> CloudSettings:
        """CloudSettings pointing here. ``timeouts`` may be a dict of CloudTimeouts fields."""
        timeouts = overrides.pop("timeouts", {})
        if isinstance(timeouts, dict):
            timeouts = CloudTimeouts(**timeouts)
        return CloudSettings(**({"base_url": self.base_url} | overrides), timeouts=timeouts)

    # --- scripting ------------------------------------------------------------------

    def queue_replies(self, *replies: Reply) -> None:
        """The next LLM requests answer these (text or tool calls), then ``reply``."""
        with self._lock:
            self._replies.extend(replies)

    def fail(self, stage: str, kind: str, *, times: int | None = 1, **params: Any) -> None:
        """Break the next ``times`` requests of ``stage`` (None: all of them) with ``kind``.

        Faults queue up per stage: the oldest one still armed applies first.
        """
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}: expected one of {STAGES}")
        if kind not in FAULTS:
            raise ValueError(f"fault {kind!r}: expected one of {FAULTS}")
        with self._lock:
            self._faults.append(Fault(stage, kind, times, **params))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget requests, queued scripts and faults (between benchmark phases)."""
        with self._lock:
            self.requests.clear()
            self._transcripts.clear()
            self._replies.clear()
            self._faults.clear()

    def requests_for(self, stage: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.stage == stage]

    def wait_for_request(self, stage: str, count: int = 1, timeout: float = 10.0) -> Request:
        """Block until ``count`` requests of ``stage`` arrived; return the last of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests_for(stage)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} {stage} requests, waited for {count}")
            time.sleep(0.005)

    # --- internals used by the handler ----------------------------------------------

    def _take_fault(self, stage: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.stage == stage and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        return self.reply(body) if callable(self.reply) else self.reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        cloud = self

        class Handler(_Handler):
            fake = cloud

        return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up on idle kept-alive connections is normal, not an error;
        so is a client refusing our self-signed certificate."""
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like a real API
    fake: FakeCloud
    _ids = itertools.count(1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests`` instead of stderr."""

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    # --- dispatch -------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        stage = _PATHS.get(path.rstrip("/"))
        record = Request(stage or "unknown", method, path, query,
                         {k.lower(): v for k, v in self.headers.items()}, body,
                         client_port=self.client_address[1], received_at=time.perf_counter())
        try:
            self._parse(record)
        finally:
            with self.fake._lock:
                self.fake.requests.append(record)
        try:
            if stage is None:
                self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}},
                           record)
                return
            fault = self.fake._take_fault(stage)
            record.fault = fault.kind if fault else None
            if fault is not None and self._generic_fault(fault, record):
                return
            getattr(self, f"_{stage}")(record, fault)
        except (_ClientGoneError, BrokenPipeError, ConnectionResetError):
            record.closed_early = not self.fake._stopping.is_set()
            self.close_connection = True
        except _DroppedError:
            self.close_connection = True
        finally:
            record.done.set()

    def _parse(self, record: Request) -> None:
        ctype = record.headers.get("content-type", "")
        if ctype.startswith("application/json") and record.body:
            with contextlib.suppress(ValueError):
                record.json = json.loads(record.body)
        elif ctype.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + record.body)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename() is None:
                    record.form[name] = payload.decode()
                    continue
                record.audio_format = {"filename": part.get_filename(),
                                       "content_type": part.get_content_type()}
                try:
                    with wave.open(io.BytesIO(payload)) as w:
                        record.audio_format |= {"rate": w.getframerate(),
                                                "channels": w.getnchannels(),
                                                "sample_width": w.getsampwidth()}
                        record.audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
                except (wave.Error, EOFError) as exc:
                    record.audio_format["error"] = str(exc)

    # --- faults shared by every stage ----------------------------------------------

    def _generic_fault(self, fault: Fault, record: Request) -> bool:
        """Apply a fault that looks the same on every endpoint; False if stage-specific."""
        if fault.kind == "status":
            self._json(fault.status, {"error": {"message": f"injected {fault.status}",
                                                "type": "server_error"}}, record)
        elif fault.kind == "rate_limit":
            self._json(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                       record, headers={"Retry-After": str(fault.retry_after)})
        elif fault.kind == "captive_portal":
            page = b"<!DOCTYPE html><html><body><h1>Welcome! Please log in.</h1></body></html>"
            self._head(200, "text/html; charset=utf-8", record, length=len(page))
            self.wfile.write(page)
        elif fault.kind == "disconnect":
            self._reset(rst=False)
        elif fault.kind == "stall_first":
            self._wait(fault.seconds)
            self._reset()
        else:
            return False
        return True

    def _wait(self, seconds: float) -> None:
        """Sleep, noticing at once when the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.fake._stopping.is_set():
                raise _ClientGoneError
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable:
                # Mid-response the client has nothing more to send: readable means EOF.
                try:
                    data = self._peek()
                except ssl.SSLWantReadError:
                    continue  # part of a TLS record, not the end
                except OSError:
                    data = b""
                if not data:
                    raise _ClientGoneError

    def _peek(self) -> bytes:
        if isinstance(self.connection, ssl.SSLSocket):
            return self.connection.recv(1)  # TLS cannot peek; nothing is expected anyway
        return self.connection.recv(1, socket.MSG_PEEK)

    def _reset(self, *, rst: bool = True) -> None:
        """Drop the connection: a TCP RST (SO_LINGER 0) as a crashing proxy would send,
        or with ``rst=False`` a plain close, as a server giving up would."""
        if rst:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()
        raise _DroppedError

    # --- writing ---------------------------------------------------------------------

    def _json(self, status: int, payload: Any, record: Request,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._head(status, "application/json", record, headers, length=len(data))
        self.wfile.write(data)

    def _head(self, status: int, ctype: str, record: Request,
              headers: dict[str, str] | None = None, length: int | None = None) -> None:
        record.status = status
        record.responded_at = time.perf_counter()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("x-request-id", f"req_{next(self._ids)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- endpoints -------------------------------------------------------------------

    def _models(self, record: Request, fault: Fault | None) -> None:
        self._json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fakecloud"}
            for m in ("whisper-1", "gpt-4o-mini", "gpt-4o-mini-tts")]}, record)

    def _stt(self, record: Request, fault: Fault | None) -> None:
        self._wait(self.fake.latency.stt)
        if record.audio is None:
            self._json(400, {"error": {"message": "could not decode the audio file",
                                       "type": "invalid_request_error"}}, record)
            return
        text = self.fake._next_transcript(record.audio)
        if fault is not None and fault.kind in ("malformed_json", "malformed_sse"):
            data = json.dumps({"text": text}).encode()[:-4]
            self._head(200, "application/json", record, length=len(data))
            self.wfile.write(data)
            return
        if fault is not None and fault.kind in ("stall_mid", "reset_mid"):
            data = json.dumps({"text": text}).encode()
            self._head(200, "application/json", record, length=len(data))
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if fault.kind == "reset_mid":
                self._reset()
            self._wait(fault.seconds)
            self.wfile.write(data[len(data) // 2:])
            return
        self._json(200, {"text": text}, record)

    def _llm(self, record: Request, fault: Fault | None) -> None:
        body = record.json or {}
        reply = self.fake._next_reply(body)
        completion_id = f"chatcmpl-{next(self._ids)}"
        created = int(time.time())

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                     "model": body.get("model", "fake"), "system_fingerprint": "fp_fake",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": finish}]}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        if not body.get("stream"):
            self._completion(body, reply, completion_id, created, record)
            return
        self._wait(self.fake.latency.llm_first_token)
        self._head(200, "text/event-stream; charset=utf-8", record,
                   headers={"Cache-Control": "no-cache"})
        self._chunk(event({"role": "assistant", "content": ""}))
        if isinstance(reply, str):
            words = tokens(reply)
            limit = body.get("max_tokens") or body.get("max_completion_tokens") or len(words)
            pieces = [event({"content": t}) for t in words[:limit]]
            finish = "stop" if limit >= len(words) else "length"  # as a model cut short
        else:
            pieces = self._tool_call_events(reply, event)
            finish = "tool_calls"
        gap = 1.0 / self.fake.latency.llm_tokens_per_second if (
            self.fake.latency.llm_tokens_per_second > 0) else 0.0
        start = time.monotonic()
        if fault is not None and fault.kind == "endless":
            self._endless(fault.variant, event, record)
        for n, piece in enumerate(pieces):
            if fault is not None and n == fault.after and self._llm_fault(fault):
                return
            # Token n is due at start + n * gap: writing never makes the rate drift.
            self._wait(start + n * gap - time.monotonic())
            self._chunk(piece)
        if fault is not None and fault.after >= len(pieces) and self._llm_fault(fault):
            return
        self._chunk(event({}, finish))
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunks()

    def _endless(self, variant: str, event: Callable[[dict[str, Any]], bytes],
                 record: Request) -> None:
        """Stream forever (until the client hangs up or the server stops): the
        attack on a client that buffers a stream without limit."""
        if variant == "tool":
            self._chunk(event({"tool_calls": [{"index": 0, "id": "call_endless",
                                               "type": "function",
                                               "function": {"name": "get_time",
                                                            "arguments": ""}}]}))
            piece = event({"tool_calls": [{"index": 0, "function": {"arguments": " " * 64}}]})
        else:
            piece = event({"content": "" if variant == "empty" else " la"})
        batch = piece * 64
        while not self.fake._stopping.is_set():
            self._chunk(batch)
            record.sent += len(batch)
        raise _ClientGoneError

    def _tool_call_events(self, reply: list[ToolCall],
                          event: Callable[[dict[str, Any]], bytes]) -> list[bytes]:
        def arguments(call: ToolCall) -> str:
            return call.arguments if isinstance(call.arguments, str) else json.dumps(
                call.arguments)

        if not self.fake.tool_call_index:
            # Some compatible servers send each call whole, unnumbered and without id.
            return [event({"tool_calls": [{"type": "function", "function": {
                "name": call.name, "arguments": arguments(call)}}]}) for call in reply]
        events = [event({"tool_calls": [{
            "index": i, "id": call.id or f"call_{next(self._ids)}", "type": "function",
            "function": {"name": call.name, "arguments": ""}}]}) for i, call in enumerate(reply)]
        for i, call in enumerate(reply):
            text = arguments(call)
            # Arguments arrive in fragments, as OpenAI's models send them.
            events += [event({"tool_calls": [{"index": i, "function": {"arguments": a}}]})
                       for a in (text[:2], text[2:]) if a]
        return events

    def _completion(self, body: dict[str, Any], reply: Reply, completion_id: str,
                    created: int, record: Request) -> None:
        """``stream=False``: the whole reply once the model has "written" every token,
        as the classic request-response cascade receives it."""
        pieces = tokens(reply) if isinstance(reply, str) else list(reply)
        rate = self.fake.latency.llm_tokens_per_second
        self._wait(self.fake.latency.llm_first_token + (
            (len(pieces) - 1) / rate if rate > 0 else 0.0))
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(reply, str):
            message["content"] = reply
        else:
            message["tool_calls"] = [{
                "id": call.id or f"call_{next(self._ids)}", "type": "function",
                "function": {"name": call.name, "arguments": call.arguments if isinstance(
                    call.arguments, str) else json.dumps(call.arguments)}} for call in reply]
        self._json(200, {
            "id": completion_id, "object": "chat.completion", "created": created,
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "stop" if isinstance(reply, str) else "tool_calls"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(pieces), "total_tokens": 0},
        }, record)

    def _llm_fault(self, fault: Fault) -> bool:
        """Break the stream; True when it has ended."""
        if fault.kind == "truncate":
            self._end_chunks()
            return True
        if fault.kind == "stall_mid":
            self._wait(fault.seconds)
        elif fault.kind == "reset_mid":
            self._reset()
        elif fault.kind == "malformed_sse":
            self._chunk(b"data: <html>502 Bad Gateway</html>\n\n")
        elif fault.kind == "malformed_json":
            self._chunk(b'data: {"id": "x", "choices": [{"delta": {"content": "Hel\n\n')
        return False

    def _tts(self, record: Request, fault: Fault | None) -> None:
        body = record.json or {}
        audio = np.asarray(self.fake.speech(str(body.get("input", ""))), dtype="<i2")
        self._wait(self.fake.latency.tts_first_byte)
        if fault is not None and fault.kind == "wrong_format":
            self._wrong_format(fault, audio, record)
            return
        if body.get("response_format") != "pcm":
            self._json(400, {"error": {"message": "this fake only serves pcm",
                                       "type": "invalid_request_error"}}, record)
            return
        self._head(200, "audio/pcm", record)
        if fault is not None and fault.kind == "endless":
            piece = tone(0.25).tobytes()
            while not self.fake._stopping.is_set():
                self._chunk(piece)
                record.sent += len(piece)
            raise _ClientGoneError
        step = max(2, int(self.fake.tts_chunk_seconds * TTS_RATE)) * 2
        data = audio.tobytes()
        # Odd chunk boundaries on purpose: real servers do not respect sample alignment.
        chunks = [data[i:i + step + 1] for i in range(0, len(data), step + 1)]
        start, sent = time.monotonic(), 0
        for n, chunk in enumerate(chunks):
            if fault is not None and n == fault.after:
                if fault.kind == "truncate":
                    break
                if fault.kind == "stall_mid":
                    self._wait(fault.seconds)
                if fault.kind == "reset_mid":
                    self._reset()
            self._chunk(chunk)
            sent += len(chunk)
            self._wait(start + self.fake.latency.tts_rtf * sent / 2 / TTS_RATE - time.monotonic())
        self._end_chunks()

    def _wrong_format(self, fault: Fault, audio: np.ndarray, record: Request) -> None:
        if fault.variant == "mislabelled":  # right bytes, wrong label
            data, ctype = audio.tobytes(), "audio/mpeg"
        elif fault.variant == "mp3":
            data, ctype = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 256, (
                "audio/mpeg")
        else:
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(TTS_RATE)
                w.writeframes(audio.tobytes())
            data, ctype = buffer.getvalue(), "audio/wav"
        self._head(200, ctype, record)
        self._chunk(data)
        self._end_chunks()


def run(coro: Any, timeout: float = 30.0) -> Any:
    """Run a test scenario on a fresh event loop, bounded by ``timeout``."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
