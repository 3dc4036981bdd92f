"""The cloud check: one GET /models with the key, telling apart what an owner
can fix (DNS, nothing listening, a timeout, TLS, a captive portal, a refused key).
The key is sent, never shown."""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlsplit

import httpx2

from edge_agent.config import Secret, Settings
from edge_agent.doctor.findings import Finding, fail, ok, skip


def check_cloud(settings: Settings, key: Secret | None, key_source: str) -> Finding:
    """One GET /models: reachable, and the key accepted. Distinguishes DNS, refused,
    timeout, TLS, a captive portal and a refused key; the key never appears."""
    cloud = settings.cloud
    if not cloud.enabled:
        return skip("cloud", "cloud.enabled = false: every answer comes from the device")
    url = cloud.base_url.rstrip("/") + "/models"
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    limit = cloud.timeouts.connect * 2
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx2.Client(timeout=httpx2.Timeout(limit, connect=cloud.timeouts.connect)) as c:
            started = time.monotonic()  # the request alone, not the client's TLS set-up
            response = c.get(url, headers=headers)
    except httpx2.TimeoutException:
        return fail("cloud", f"no answer from {host} within {limit:g} s (timeout)",
                     "check the network (ping, a firewall or proxy); a slow link may need "
                     "a larger cloud.timeouts.connect")
    except httpx2.HTTPError as exc:
        return connection_failure(exc, host)
    ms = (time.monotonic() - started) * 1000
    status = response.status_code
    ctype = response.headers.get("content-type", "").lower()
    if ctype.startswith(("text/html", "application/xhtml")):
        return fail("cloud", f"{host} answered with a web page, not the API: a captive "
                              "portal or proxy is in the way",
                     "log in to the network's portal in a browser, or check cloud.base_url")
    if status in (401, 403):
        if key is None:
            return skip("cloud", f"{host} is reachable; it wants an API key (HTTP {status})")
        return fail("cloud", f"{host} refused the API key from {key_source} (HTTP {status})",
                     f"check the key with your provider and replace it in {key_source}")
    if status == 404:
        return fail("cloud", f"no API at {url} (HTTP 404)",
                     "check cloud.base_url (an OpenAI-compatible API, usually ending in /v1)")
    if status >= 500:
        return fail("cloud", f"{host} has a fault (HTTP {status})",
                     "the service's problem: try again later (answers work offline meanwhile)")
    if status >= 400 and status != 429:
        return fail("cloud", f"{host} rejected the request (HTTP {status})",
                     "check cloud.base_url and the key")
    accepted = "accepted the API key" if key else "answered without a key"
    return ok("cloud", f"{host} {accepted} (GET /models: HTTP {status} in {ms:.0f} ms)")


def connection_failure(exc: BaseException, host: str) -> Finding:
    causes = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(c) for c in causes)
    if any(isinstance(c, socket.gaierror) for c in causes) or "name resolution" in text \
            or "Name or service not known" in text or "nodename nor servname" in text:
        return fail("cloud", f"cannot resolve {host.split(':')[0]} (DNS)",
                     "check the network and its DNS (getent hosts "
                     f"{host.split(':')[0]}), or the spelling of cloud.base_url")
    if any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in text:
        return fail("cloud", f"{host} refused the connection: nothing listens there",
                     "check cloud.base_url; a server on your network must be running")
    if any(isinstance(c, ssl.SSLError) for c in causes) or "certificate" in text.lower():
        return fail("cloud", f"TLS with {host} failed ({type(causes[-1]).__name__})",
                     "check the clock (date), a proxy that intercepts HTTPS, or the CA "
                     "certificates (SSL_CERT_FILE)")
    return fail("cloud", f"cannot connect to {host} ({type(causes[-1]).__name__}: "
                          f"{causes[-1]})", "check the network (ip route, ping)")
