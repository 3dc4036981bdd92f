"""Circuit breakers and Connectivity against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edge_agent.cloud import CloudClient, CloudSTT
from edge_agent.config import CloudSettings, OfflineSettings, Secret, Settings
from edge_agent.errors import CloudError, LlmCloudError, SttCloudError, TtsCloudError
from edge_agent.events import Event, EventBus
from edge_agent.net import BreakerState, CircuitBreaker, Connectivity

KEY = Secret("sk-test-key")


class Service:
    """A tiny stand-in for the cloud API: GET /models answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.hits: list[float] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.hits.append(time.monotonic())
                body = b'{"object": "list", "data": []}'
                self.send_response(service.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service() -> Iterator[Service]:
    s = Service()
    yield s
    s.close()


def refused_url() -> str:
    """A loopback port nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def settings(base_url: str, interval: float = 0.05, max_interval: float = 0.4) -> Settings:
    return dataclasses.replace(
        Settings(),
        cloud=CloudSettings(base_url=base_url),
        offline=OfflineSettings(probe_interval=interval, probe_max_interval=max_interval))


def recorder(bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(lambda e: events.append(e) if e.name == "network" else None)
    return events


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- the breaker ----------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_cools_down_doubling() -> None:
    b = CircuitBreaker("llm", threshold=2, cooldown=1.0, max_cooldown=3.0)
    b.failure(now=0)
    assert b.state(0) is BreakerState.CLOSED
    b.failure(now=0)
    assert not b.allow(0.5) and b.allow(1.0)
    assert b.state(1.0) is BreakerState.HALF_OPEN
    b.failure(now=1.0)  # the trial failed: twice as long
    assert not b.allow(2.9) and b.allow(3.0)
    b.failure(now=3.0)  # capped
    assert not b.allow(5.9) and b.allow(6.0)
    b.success()
    assert b.state() is BreakerState.CLOSED and b.failures == 0


def test_breaker_hold_and_trip() -> None:
    b = CircuitBreaker("tts", threshold=3)
    b.failure(hold=10.0, now=0)  # Retry-After opens it at once
    assert not b.allow(9.9) and b.allow(10.0)
    b.trip()
    assert not b.allow(1e12)
    b.success()
    assert b.allow()


# --- passive: failures of real requests -----------------------------------------------


@pytest.fixture(params=["refused", "dns", "tls"])
def unreachable(request: pytest.FixtureRequest, service: Service) -> str:
    """A base URL that fails the way a device without network (or with a wrong
    clock, which breaks TLS) fails."""
    return {
        "refused": refused_url(),
        "dns": "http://edge-agent-test.invalid/v1",
        # TLS to a plain HTTP server: the handshake fails as with a bad certificate
        "tls": service.url.replace("http://", "https://"),
    }[request.param]


def test_offline_failure_trips_every_stage_and_says_so(unreachable: str) -> None:
    bus = EventBus()
    events = recorder(bus)

    async def scenario() -> Connectivity:
        client = CloudClient(CloudSettings(base_url=unreachable), KEY)
        try:
            with pytest.raises(SttCloudError) as caught:
                await CloudSTT(client).transcribe(np.zeros(1600, dtype=np.int16))
            assert not await client.probe()
        finally:
            await client.aclose()
        assert caught.value.offline
        net = Connectivity(Settings(), bus, probe=client.probe)
        assert all(net.allow(s) for s in ("stt", "llm", "tts"))
        net.record_failure("stt", caught.value)
        return net

    net = run(scenario())
    assert not net.online
    assert not any(net.allow(s) for s in ("stt", "llm", "tts"))
    assert [e.fields["online"] for e in events] == [False]
    assert "stt" in events[0].fields["reason"]
    assert net.status()["breakers"] == {"stt": "open", "llm": "open", "tts": "open"}


def test_rate_limit_pauses_only_its_stage() -> None:
    net = Connectivity(Settings(), EventBus(), probe=lambda: asyncio.sleep(0, True))
    net.record_failure("llm", LlmCloudError("rate limited (429)", retry_after=0.1))
    assert net.online and not net.allow("llm") and net.allow("tts")
    time.sleep(0.15)
    assert net.allow("llm")


def test_repeated_non_offline_failures_open_the_stage() -> None:
    net = Connectivity(Settings(), EventBus(), probe=lambda: asyncio.sleep(0, True))
    for _ in range(2):
        net.record_failure("tts", TtsCloudError("malformed response"))
    assert net.allow("tts")
    net.record_success("tts")  # a success in between starts the count again
    for _ in range(2):
        net.record_failure("tts", TtsCloudError("malformed response"))
    assert net.allow("tts")
    net.record_failure("tts", TtsCloudError("malformed response"))
    assert not net.allow("tts") and net.online and net.allow("stt")


def test_a_real_success_while_offline_brings_it_back() -> None:
    bus = EventBus()
    events = recorder(bus)
    net = Connectivity(Settings(), bus, probe=lambda: asyncio.sleep(0, False))
    net.record_failure("llm", LlmCloudError("cannot reach the service", offline=True))
    net.record_success("llm")
    assert net.online and all(net.allow(s) for s in ("stt", "llm", "tts"))
    assert [e.fields["online"] for e in events] == [False, True]


# --- active: the probe ----------------------------------------------------------------


def test_starts_offline_probes_with_backoff_and_comes_back(service: Service) -> None:
    service.status = 503
    bus = EventBus()
    events = recorder(bus)

    async def scenario() -> Connectivity:
        client = CloudClient(CloudSettings(base_url=service.url), KEY)
        five = asyncio.Event()  # the start probe and four more

        async def probe() -> bool:
            answered = await client.probe()
            if len(service.hits) >= 5:
                five.set()
            return answered

        net = Connectivity(settings(service.url, 0.1, 0.4), bus, probe=probe)
        back = asyncio.Event()
        bus.subscribe(lambda e: back.set() if e.fields.get("online") is True else None)
        task = asyncio.create_task(net.run())
        try:
            await five.wait()
            service.status = 200
            await back.wait()
        finally:
            task.cancel()
            await client.aclose()
        return net

    net = run(scenario())
    assert net.online and all(net.allow(s) for s in ("stt", "llm", "tts"))
    assert [e.fields["online"] for e in events] == [False, True]
    gaps = np.diff(service.hits[:5])
    # 0.1, 0.2, 0.4, 0.4 s: doubling, then capped (ratios, not wall-clock bounds)
    assert gaps[2] > 1.5 * gaps[0]
    assert gaps[3] < 1.5 * gaps[2]


def test_online_at_start_stays_quiet(service: Service) -> None:
    bus = EventBus()
    events = recorder(bus)

    async def scenario() -> Connectivity:
        client = CloudClient(CloudSettings(base_url=service.url), KEY)
        probed = asyncio.Event()

        async def probe() -> bool:
            probed.set()
            return await client.probe()

        net = Connectivity(settings(service.url), bus, probe=probe)
        task = asyncio.create_task(net.run())
        await probed.wait()
        await asyncio.sleep(0.3)
        task.cancel()
        await client.aclose()
        return net

    net = run(scenario())
    assert net.online and events == [] and len(service.hits) == 1


def test_refused_probe_keeps_it_offline_until_cancelled() -> None:
    url = refused_url()

    async def scenario() -> Connectivity:
        client = CloudClient(CloudSettings(base_url=url), KEY)
        net = Connectivity(settings(url), EventBus(), probe=client.probe, online=False)
        task = asyncio.create_task(net.run())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()
        return net

    net = run(scenario())
    assert not net.online and net.probes >= 2


def test_a_probe_that_raises_counts_as_offline() -> None:
    async def broken() -> bool:
        raise OSError("network is unreachable")

    async def scenario() -> Connectivity:
        net = Connectivity(settings("http://127.0.0.1:9/v1"), EventBus(), probe=broken)
        task = asyncio.create_task(net.run())
        await asyncio.sleep(0.3)
        task.cancel()
        return net

    net = run(scenario())
    assert not net.online and net.probes >= 2


def test_nudge_probes_early_while_offline(service: Service) -> None:
    service.status = 503
    bus = EventBus()
    events = recorder(bus)

    async def scenario() -> Connectivity:
        client = CloudClient(CloudSettings(base_url=service.url), KEY)
        probed = asyncio.Event()

        async def probe() -> bool:
            answered = await client.probe()
            probed.set()
            return answered

        # Left alone it would first probe after 30 s.
        net = Connectivity(settings(service.url, 30, 60), bus, probe=probe, online=False)
        task = asyncio.create_task(net.run())
        try:
            net.nudge()  # a turn starts
            await probed.wait()
            assert net.probes == 1 and not net.online
            probed.clear()
            service.status = 200
            net.nudge()  # too soon after the last probe: it waits its interval
            await asyncio.sleep(0.3)
            assert net.probes == 1
        finally:
            task.cancel()
            await client.aclose()
        return net

    net = run(scenario())
    assert not net.online and [e.fields["online"] for e in events] == [False]


def test_nudge_while_online_does_nothing(service: Service) -> None:
    async def scenario() -> Connectivity:
        client = CloudClient(CloudSettings(base_url=service.url), KEY)
        net = Connectivity(settings(service.url, 0.01, 0.01), EventBus(), probe=client.probe)
        task = asyncio.create_task(net.run())
        await asyncio.sleep(0.1)
        net.nudge()
        await asyncio.sleep(0.2)
        task.cancel()
        await client.aclose()
        return net

    net = run(scenario())
    assert net.online and net.probes == 1


def test_retry_after_of_an_outage_delays_the_probe(service: Service) -> None:
    service.status = 503

    async def scenario() -> tuple[float, Connectivity]:
        client = CloudClient(CloudSettings(base_url=service.url), KEY)
        bus = EventBus()
        net = Connectivity(settings(service.url, 0.01, 1.0), bus, probe=client.probe)
        back = asyncio.Event()
        bus.subscribe(lambda e: back.set() if e.fields.get("online") else None)
        failed_at = time.monotonic()
        net.record_failure("tts", TtsCloudError("service error (503)", offline=True,
                                                retry_after=0.5))
        task = asyncio.create_task(net.run())
        service.status = 200
        await back.wait()
        task.cancel()
        await client.aclose()
        return failed_at, net

    failed_at, net = run(scenario())
    assert net.online
    assert service.hits[0] - failed_at >= 0.5  # the service asked for half a second


# --- what status says ------------------------------------------------------------------


def test_online_is_not_claimed_before_the_first_answer(service: Service) -> None:
    async def scenario() -> list[str]:
        client = CloudClient(CloudSettings(base_url=service.url), KEY)
        net = Connectivity(settings(service.url), EventBus(), probe=client.probe)
        states = [net.state]
        task = asyncio.create_task(net.run())
        await asyncio.wait_for(net.checked.wait(), 10)
        states.append(net.state)
        task.cancel()
        await client.aclose()
        return states

    assert run(scenario()) == ["checking", "online"]


def test_the_probe_cause_is_kept_and_a_known_one_is_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    causes = iter(["dns", "dns", "dns"])

    async def scenario() -> dict[str, object]:
        six = asyncio.Event()

        async def probe() -> bool:
            if net.probes >= 6:
                six.set()
            cause = next(causes, "key_refused")
            raise CloudError(f"because {cause}", offline=True, cause=cause)

        net = Connectivity(settings("http://x/v1", 0.01, 0.02), EventBus(), probe=probe)
        task = asyncio.create_task(net.run())
        await asyncio.wait_for(six.wait(), 10)
        task.cancel()
        return net.status()

    state = run(scenario())
    assert (state["state"], state["cause"]) == ("offline", "key_refused")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # the first cause, then the change; not one per probe
    assert "because dns" in warnings[0] and "because key_refused" in warnings[1]


def test_a_cause_known_at_start_is_offline_at_once() -> None:
    async def scenario() -> Connectivity:
        error = CloudError("the API key is missing", offline=True, cause="no_key")
        return Connectivity(Settings(), EventBus(), probe=lambda: asyncio.sleep(0, False),
                            unavailable=error)

    net = run(scenario())
    assert net.checked.is_set() and not net.online
    assert net.key_problem == "the API key is missing"
    assert not any(net.allow(s) for s in ("stt", "llm", "tts"))
