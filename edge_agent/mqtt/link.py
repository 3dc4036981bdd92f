"""The broker connection: one supervised job that connects, says "online"
(retained, with a last will saying "offline"), publishes the discovery configs
and the speaker's state, takes commands, and reconnects with a backoff.

A broker that is down, slow or refusing never reaches a voice turn: the agent
only ever calls the arbiter, which answers alone while disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from typing import TYPE_CHECKING, Any

import aiomqtt

from edge_agent.mqtt.arbitration import GroupArbiter
from edge_agent.mqtt.commands import CommandError, parse_announcement, parse_command
from edge_agent.mqtt.discovery import discovery_messages
from edge_agent.mqtt.states import snapshot

if TYPE_CHECKING:
    from edge_agent.agent.agent import Agent
    from edge_agent.config import MqttSettings, Secret
    from edge_agent.events import Event, EventBus
    from edge_agent.intents.timers import Timers
    from edge_agent.mqtt.announcer import Announcer
    from edge_agent.mqtt.topics import Topics

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 3.0
"""Longest wait between connection attempts: back in HA within ~3 s of the broker."""
KEEPALIVE = 15
"""Seconds; the broker sends the last will after 1.5 times this without a word."""
CONNECT_TIMEOUT = 5.0
POLL_SECONDS = 1.0
"""State is re-read this often (volume, timers) besides on every event."""
CLOSE_DEADLINE = 0.3
"""Of the stop budget, the time "offline" gets to reach the broker."""
INCOMING_LIMIT = 100
"""Messages waiting to be handled; more are dropped by the client (a flood)."""
POKE_EVENTS = frozenset({"state", "mute", "network", "turn_done", "transcript", "reply_text",
                         "audio_device", "wake_near_miss"})


class MqttLink:
    def __init__(self, settings: MqttSettings, topics: Topics, *, agent: Agent, bus: EventBus,
                 timers: Timers | None, announcer: Announcer, password: Secret | None,
                 tls: ssl.SSLContext | None) -> None:
        self.settings = settings
        self.topics = topics
        self._agent = agent
        self._bus = bus
        self._timers = timers
        self._announcer = announcer
        self._password = password
        self._tls = tls
        self._client: aiomqtt.Client | None = None
        self._connected = False
        self._error = ""
        self._published: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.arbiter = (GroupArbiter(topics.device_id, settings.arbitration_window, self, bus)
                        if topics.claims else None)
        """The agent's wake arbiter when the speaker is in a group."""

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> dict[str, Any]:
        return {"broker": f"{self.settings.host}:{self.settings.port}",
                "connected": self._connected, "device_id": self.topics.device_id,
                "group": self.topics.group, "error": self._error}

    async def publish_claim(self, payload: bytes) -> None:
        client, claims = self._client, self.topics.claims
        if client is None or claims is None or not self._connected:
            raise aiomqtt.MqttError("not connected")
        await client.publish(claims, payload, qos=0)

    # --- the job ---------------------------------------------------------------------

    async def run(self) -> None:
        unsubscribe = self._bus.subscribe(self._on_event)
        announcements = asyncio.create_task(self._announcer.run(), name="announcements")
        delay = BACKOFF_FIRST
        try:
            while True:
                try:
                    async with self._new_client() as client:
                        delay = BACKOFF_FIRST
                        await self._serve(client)
                except aiomqtt.MqttError as exc:
                    self._set_connected(False, str(exc) or type(exc).__name__)
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError from None  # a stop, not a broker fault
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        finally:
            unsubscribe()
            announcements.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announcements

    def _new_client(self) -> aiomqtt.Client:
        s, topics = self.settings, self.topics
        return aiomqtt.Client(
            s.host, s.port,
            identifier=f"edge-agent-{topics.device_id}",
            username=s.username or None,
            password=str(self._password) if self._password is not None else None,
            will=aiomqtt.Will(topics.availability, "offline", qos=1, retain=True),
            keepalive=KEEPALIVE, timeout=CONNECT_TIMEOUT, tls_context=self._tls,
            max_queued_incoming_messages=INCOMING_LIMIT, logger=log)

    async def _serve(self, client: aiomqtt.Client) -> None:
        topics = self.topics
        self._client = client
        try:
            await client.subscribe(topics.command)
            await client.subscribe(topics.announce)
            if topics.claims is not None:
                await client.subscribe(topics.claims)
            for topic, payload in discovery_messages(topics):
                await client.publish(topic, payload, qos=1, retain=True)
            await client.publish(topics.availability, "online", qos=1, retain=True)
            self._published.clear()  # a fresh broker may have lost every retained state
            self._set_connected(True, "")
            await _first_to_end(self._receive(client), self._publish_states(client))
        except asyncio.CancelledError:
            # Stopping: say goodbye ourselves, the last will is only for a crash.
            # (After a broker fault the socket is gone: nothing to say it on.)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.publish(
                    topics.availability, "offline", qos=1, retain=True), CLOSE_DEADLINE)
            raise
        finally:
            self._client = None
            # Leaving: the client's goodbye waits for the broker to close the socket,
            # at most this long (its default is the connect timeout).
            client.timeout = CLOSE_DEADLINE

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                self._dispatch(str(message.topic), message.payload, retained=message.retain)
            except Exception:  # one message never takes the link down
                log.exception("MQTT message on %s not handled", message.topic)

    async def _publish_states(self, client: aiomqtt.Client) -> None:
        while True:
            self._dirty.clear()
            for name, payload in snapshot(self._agent, self._timers).items():
                if self._published.get(name) != payload:
                    await client.publish(self.topics.state(name), payload, retain=True)
                    self._published[name] = payload
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), POLL_SECONDS)

    def _set_connected(self, connected: bool, error: str) -> None:
        s = self.settings
        changed = connected != self._connected or error != self._error
        self._connected, self._error = connected, error
        if not changed:
            return
        if connected:
            log.info("MQTT connected to %s:%d as %s", s.host, s.port, self.topics.device_id)
        else:
            log.warning("MQTT broker %s:%d unreachable: %s (retrying every %g s at most)",
                        s.host, s.port, error, BACKOFF_MAX)
        self._bus.emit("mqtt", connected=connected, error=error)

    # --- incoming ----------------------------------------------------------------------

    def _dispatch(self, topic: str, payload: Any, *, retained: bool) -> None:
        if retained:
            # The broker hands a retained message to every new subscription: acting
            # on it would replay a stale "listen" or "say" at every (re)connect.
            log.warning("ignored a retained message on %s: commands, announcements and "
                        "claims act only when sent live; clear it with: "
                        "mosquitto_pub -r -n -t %s", topic, topic)
            return
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        if not payload:
            log.debug("empty message on %s (a retained message being cleared)", topic)
            return
        topics = self.topics
        if topic == topics.claims and self.arbiter is not None:
            self.arbiter.on_claim(bytes(payload))
            return
        try:
            if topic == topics.announce:
                self._announcer.put(parse_announcement(bytes(payload)))
            elif topic == topics.command:
                self._command(bytes(payload))
        except CommandError as exc:
            log.warning("refused a message on %s: %s", topic, exc)

    def _command(self, payload: bytes) -> None:
        command = parse_command(payload)
        agent = self._agent
        log.info("MQTT command: %s", command.name)
        if command.name in ("mute", "unmute"):
            agent.set_muted(command.name == "mute")
        elif command.name == "volume":
            agent.volume = command.volume
        elif command.name == "listen":
            agent.trigger("mqtt")
        elif command.name == "stop":
            agent.stop()
        elif command.name == "say":
            self._announcer.put(command.text)
        self._poke()

    def _on_event(self, event: Event) -> None:
        if event.name in POKE_EVENTS:
            self._poke()

    def _poke(self) -> None:
        """Publish now (from any thread): the event loop owns the flag."""
        if threading.get_ident() == self._loop_thread:
            self._dirty.set()
        else:
            self._loop.call_soon_threadsafe(self._dirty.set)


async def _first_to_end(*jobs: Any) -> None:
    """Run side by side until one ends; cancel the rest and raise what it raised."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
