"""One client for the daemon's life, speaking the OpenAI-compatible HTTP API
over httpx2, and the one place where httpx2 exceptions and error statuses become
our CloudError subclasses.

A single ``httpx2.AsyncClient`` is kept alive so TCP and TLS setup are paid
once (and again only after the server drops an idle connection, which
``prewarm`` hides). Nothing is retried here: a hidden retry costs seconds, and
failover decides what happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from edge_agent.config import CloudSettings, Secret
from edge_agent.errors import CAUSES, CloudError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
"""A whole JSON answer (a transcript, the model list): a transcript of the longest
utterance is a few KB, so a larger body is no answer we can use."""
MAX_ERROR_BYTES = 64 << 10
"""Bytes of an error answer read for its message."""
MAX_MESSAGE_CHARS = 120
"""Characters of the server's error message kept in a CloudError's reason."""


class CloudClient:
    """The kept-alive connection to ``settings.base_url`` shared by STT, LLM and TTS."""

    def __init__(self, settings: CloudSettings, api_key: Secret | None, *,
                 transport: httpx2.AsyncBaseTransport | None = None) -> None:
        """``transport`` replaces the network (the start-up rehearsal answers in memory)."""
        self.settings = settings
        self.has_key = api_key is not None
        self._key = api_key
        t = settings.timeouts
        # httpx timeouts are only the backstop; each stage enforces its own budget with
        # asyncio timeouts around the stream, which also cover slow trickles of bytes.
        backstop = max(t.stt, t.llm_first_token, t.llm_idle, t.tts_first_byte)
        self._http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(backstop, connect=t.connect, pool=t.connect),
            limits=httpx2.Limits(max_connections=8, max_keepalive_connections=4,
                                 keepalive_expiry=120.0),
            # Bodies as sent: every bound below counts the bytes received, which a
            # compressed body would multiply on the way in.
            headers={"Accept-Encoding": "identity"},
            transport=transport,
        )
        self.last_used = 0.0
        """Monotonic time of the last request (prewarm after long idle)."""

    async def prewarm(self, *, if_idle_for: float = 0.0) -> None:
        """Open a connection ahead of need (at start, and after idle: e.g. on the wake
        word, while the user is still speaking). Never raises.

        ``if_idle_for``: skip it when a request went out more recently than this, as
        the connection is then still open (servers keep idle ones for a minute or more).
        """
        if self.last_used and time.monotonic() - self.last_used < if_idle_for:
            return
        try:
            await self.probe()
        except Exception as exc:  # a failed prewarm only means the first turn pays setup
            log.debug("prewarm failed: %s", exc)

    def require_key(self, error: type[CloudError]) -> None:
        """Raise ``error`` (offline, cause "no_key") when no key is configured: a request
        without one can only be refused, and says nothing about the network."""
        if not self.has_key:
            raise error(CAUSES["no_key"], offline=True, cause="no_key")

    async def check(self) -> None:
        """One cheap request (GET /models); returns if the service answers and takes
        the key, else raises CloudError with its ``cause`` (no key, key refused, DNS,
        refused, timeout, 5xx, captive portal). A 4xx other than 401/403 still counts
        as an answer: some compatible servers have no /models."""
        self.require_key(CloudError)
        try:
            async with asyncio.timeout(self.settings.timeouts.connect * 2), \
                    self.open(self.request("GET", "/models")) as response:
                # Read whole (bounded), so the connection stays open for the turn.
                await read_body(response, MAX_BODY_BYTES)
        except (httpx2.HTTPError, TimeoutError, OSError, ValueError) as exc:
            raise convert(exc, CloudError) from exc
        status = response.status_code
        if status in (401, 403):
            raise CloudError(f"{CAUSES['key_refused']} ({status})", offline=True,
                             cause="key_refused")
        if status >= 500:
            raise CloudError(f"service error ({status})", offline=True, cause="service")
        check_intercepted(response.headers.get("content-type", ""), CloudError)

    async def probe(self) -> bool:
        """``check()`` as a yes or no, e.g. for prewarm. Never raises except on
        cancellation."""
        try:
            await self.check()
        except CloudError as exc:
            log.debug("probe failed: %s", exc.reason)
            return False
        return True

    def request(self, method: str, path: str, **content: Any) -> httpx2.Request:
        """A request to ``base_url`` + ``path`` with the key, built but not sent.
        ``content``: httpx2's ``json``, ``data``, ``files`` or ``content``. Safe in a
        worker thread (a large upload is built off the event loop)."""
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        return self._http.build_request(
            method, self.settings.base_url.rstrip("/") + path, headers=headers, **content)

    @contextlib.asynccontextmanager
    async def open(self, request: httpx2.Request) -> AsyncIterator[httpx2.Response]:
        """Send ``request``; the response's body is still to be read, and is closed
        on leaving (a body left unread costs the connection: see ``touch``)."""
        self.touch()
        response = await self._http.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    @contextlib.asynccontextmanager
    async def send(self, request: httpx2.Request,
                   error: type[CloudError]) -> AsyncIterator[httpx2.Response]:
        """``open``, for an API call: an error status or a web page raises ``error``."""
        async with self.open(request) as response:
            if response.status_code >= 400:
                try:
                    body = await read_body(response, MAX_ERROR_BYTES)
                except (httpx2.HTTPError, ValueError):
                    body = b""  # the status says enough
                raise status_error(response, body, error, self._key)
            check_intercepted(response.headers.get("content-type", ""), error)
            yield response

    def touch(self, *, reusable: bool = True) -> None:
        """Note a request. ``reusable=False``: a stream was abandoned half read, so its
        connection is gone and the next ``prewarm(if_idle_for=...)`` must not skip."""
        self.last_used = time.monotonic() if reusable else 0.0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


FAILURES = (CloudError, httpx2.HTTPError, OSError, TimeoutError, ValueError, KeyError,
            TypeError, AttributeError, IndexError, RecursionError)
"""What a request can fail with: library errors, and the parse errors of a body that
is not what the API promised. Anything else is a bug and propagates unchanged."""


def convert(
    exc: BaseException, error: type[CloudError], *, midstream: bool = False,
    partial: bool = False,
) -> CloudError:
    """Map a library exception to ``error`` (the stage's CloudError subclass).

    ``midstream``: the response had begun. A failure before that says the service
    is out of reach (offline); after it, only this stream broke.
    ``partial``: text was already handed on (LLM), so a retry elsewhere would repeat it.
    """
    if isinstance(exc, CloudError):
        return exc
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        if midstream:
            return error("stalled mid-stream", partial=partial)
        return error("timed out before the first byte", offline=True, cause="timeout")
    if isinstance(exc, httpx2.TransportError | OSError):
        cause = exc.__cause__ or exc
        if midstream:
            return error(f"connection broken mid-stream ({_name(cause)})", partial=partial)
        kind = _connect_cause(exc)
        what = CAUSES[kind] if kind else "cannot reach the service"
        return error(f"{what} ({_name(cause)})", offline=True, cause=kind)
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError | IndexError
                  | RecursionError):
        return error(f"malformed response ({_name(exc)})", partial=partial)
    return error(_name(exc), partial=partial)


def check_intercepted(content_type: str, error: type[CloudError]) -> None:
    """Raise when an API call was answered with a web page: a captive portal (hotel or
    café Wi-Fi) or a proxy stands between us and the service, so it is out of reach."""
    if content_type.lower().startswith(("text/html", "application/xhtml")):
        raise error(f"answered by a web page ({content_type}), not the API: a captive "
                    "portal or proxy is in the way", offline=True, cause="portal")


async def read_body(response: httpx2.Response, limit: int) -> bytes:
    """The rest of the body; ValueError past ``limit`` bytes (a server that sends on
    and on fills no buffer here)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise ValueError(f"an answer longer than {limit} bytes")
    return bytes(body)


def status_error(response: httpx2.Response, body: bytes, error: type[CloudError],
                 key: str | None = None) -> CloudError:
    """``error`` for an HTTP error status; ``body`` is what was read of the answer
    (its message is kept for a rejected request, with ``key`` masked in it)."""
    status = response.status_code
    if status == 429:
        return error("rate limited (429)", retry_after=retry_after(response))
    if status >= 500:
        return error(f"service error ({status})", offline=True,
                     retry_after=retry_after(response), cause="service")
    if status in (401, 403):
        # Offline for every stage: they share the key, so no stage can work until
        # the owner fixes it (and the probe notices).
        return error(f"{CAUSES['key_refused']} ({status})", offline=True, cause="key_refused")
    return error(f"request rejected ({status}: {_message(response, body, key)})")


def _message(response: httpx2.Response, body: bytes, key: str | None) -> str:
    """The server's own words: OpenAI's ``{"error": {"message": ...}}`` and the
    shapes compatible servers use, else the status line's phrase."""
    text = ""
    with contextlib.suppress(ValueError, RecursionError):
        found = json.loads(body)
        if isinstance(found, dict):
            found = found.get("error", found)
        if isinstance(found, dict):
            found = found.get("message") or found.get("detail")
        if isinstance(found, str):
            text = found
    text = " ".join(text.split())  # one line in logs and status
    if key:
        text = text.replace(key, "***")
    return text[:MAX_MESSAGE_CHARS] or response.reason_phrase or "error"


def retry_after(response: httpx2.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), else None."""
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _connect_cause(exc: BaseException) -> str:
    """"dns" or "refused" when the exception chain says so, else ""."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "dns"
        if isinstance(current, ConnectionRefusedError):
            return "refused"
        if isinstance(current, TimeoutError):
            return "timeout"
        current = current.__cause__ or current.__context__
    return ""


def _name(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text[:120]}" if text and text != name else name
