"""One OpenAI-compatible client for the daemon's life, and the one place where
openai/httpx2 exceptions become our CloudError subclasses.

A single ``httpx2.AsyncClient`` is kept alive so TCP and TLS setup are paid
once (and again only after the server drops an idle connection, which
``prewarm`` hides). The openai library's own retries are off: a hidden retry
costs seconds, and failover decides what happens next, not the library.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time

import httpx2
import openai

from edge_agent.config import CloudSettings, Secret
from edge_agent.errors import CAUSES, CloudError

log = logging.getLogger(__name__)

_NO_KEY = "none"
"""Given to the openai library, which refuses to start without a key, when none is
configured. Never sent: without a key no request goes out (``require_key``)."""


class CloudClient:
    """The kept-alive connection to ``settings.base_url`` shared by STT, LLM and TTS."""

    def __init__(self, settings: CloudSettings, api_key: Secret | None, *,
                 transport: httpx2.AsyncBaseTransport | None = None) -> None:
        """``transport`` replaces the network (the start-up rehearsal answers in memory)."""
        self.settings = settings
        self.has_key = api_key is not None
        t = settings.timeouts
        # httpx timeouts are only the backstop; each stage enforces its own budget with
        # asyncio timeouts around the stream, which also cover slow trickles of bytes.
        backstop = max(t.stt, t.llm_first_token, t.llm_idle, t.tts_first_byte)
        self._http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(backstop, connect=t.connect, pool=t.connect),
            limits=httpx2.Limits(max_connections=8, max_keepalive_connections=4,
                                 keepalive_expiry=120.0),
            transport=transport,
        )
        self.api = openai.AsyncOpenAI(
            api_key=str(api_key) if api_key else _NO_KEY,
            base_url=settings.base_url,
            max_retries=0,
            timeout=self._http.timeout,
            http_client=self._http,
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
        self.touch()
        try:
            async with asyncio.timeout(self.settings.timeouts.connect * 2):
                response = await self._http.get(
                    self.settings.base_url.rstrip("/") + "/models",
                    headers={"Authorization": f"Bearer {self.api.api_key}"},
                )
        except (httpx2.HTTPError, TimeoutError, OSError) as exc:
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

    def touch(self, *, reusable: bool = True) -> None:
        """Note a request. ``reusable=False``: a stream was abandoned half read, so its
        connection is gone and the next ``prewarm(if_idle_for=...)`` must not skip."""
        self.last_used = time.monotonic() if reusable else 0.0

    async def aclose(self) -> None:
        await self.api.close()
        await self._http.aclose()

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


FAILURES = (CloudError, openai.OpenAIError, httpx2.HTTPError, OSError, TimeoutError, ValueError,
            KeyError, TypeError, AttributeError)
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
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, error)
    if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx2.TimeoutException):
        if midstream:
            return error("stalled mid-stream", partial=partial)
        return error("timed out before the first byte", offline=True, cause="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | OSError):
        cause = exc.__cause__ or exc
        if midstream:
            return error(f"connection broken mid-stream ({_name(cause)})", partial=partial)
        kind = _connect_cause(exc)
        what = CAUSES[kind] if kind else "cannot reach the service"
        return error(f"{what} ({_name(cause)})", offline=True, cause=kind)
    if isinstance(exc, openai.APIResponseValidationError | ValueError | KeyError | TypeError
                  | AttributeError):
        return error(f"malformed response ({_name(exc)})", partial=partial)
    return error(_name(exc), partial=partial)


def check_intercepted(content_type: str, error: type[CloudError]) -> None:
    """Raise when an API call was answered with a web page: a captive portal (hotel or
    café Wi-Fi) or a proxy stands between us and the service, so it is out of reach."""
    if content_type.lower().startswith(("text/html", "application/xhtml")):
        raise error(f"answered by a web page ({content_type}), not the API: a captive "
                    "portal or proxy is in the way", offline=True, cause="portal")


def _status_error(exc: openai.APIStatusError, error: type[CloudError]) -> CloudError:
    status = exc.status_code
    if status == 429:
        return error("rate limited (429)", retry_after=retry_after(exc.response))
    if status >= 500:
        return error(f"service error ({status})", offline=True,
                     retry_after=retry_after(exc.response), cause="service")
    if status in (401, 403):
        # Offline for every stage: they share the key, so no stage can work until
        # the owner fixes it (and the probe notices).
        return error(f"{CAUSES['key_refused']} ({status})", offline=True, cause="key_refused")
    return error(f"request rejected ({status}: {_message(exc)})")


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:120]
    return exc.response.reason_phrase or "error"


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
