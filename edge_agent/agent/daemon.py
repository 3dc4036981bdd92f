"""The daemon: builds every piece from Settings (one factory each), runs the
long-lived jobs under the supervisor, and handles SIGTERM, SIGHUP and sd_notify.

Start-up needs no network: the cloud engines are built but only used once the
connectivity probe says the service answers. READY=1 goes out only after the
speaker is open, the microphone delivers and the models are loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from edge_agent.agent.agent import Agent
from edge_agent.agent.supervisor import Supervisor
from edge_agent.agent.turn import TurnRunner
from edge_agent.audio import Microphone, Player, RingBuffer
from edge_agent.cloud import CloudClient, CloudLLM, CloudSTT, CloudTTS, Conversation
from edge_agent.config import Settings, load_api_key, load_config
from edge_agent.controls import Earcons, PushButton, StatusLeds, make_pin_factory
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.events import Event, EventBus, EventLog
from edge_agent.intents import LocalIntents, Timers, device_tools
from edge_agent.logsetup import follow_state, set_level, setup_logging
from edge_agent.net import Connectivity
from edge_agent.offline import PiperTTS, VoskSTT, default_piper_voice, find_vosk_model
from edge_agent.service.control import ControlServer
from edge_agent.service.notify import Notifier, Watchdog, progress_check
from edge_agent.service.reload import ReloadPlan, plan_reload
from edge_agent.state import AgentState
from edge_agent.wake import WakeDetector

log = logging.getLogger(__name__)

STOP_DEADLINE = 1.0
"""Of systemd's 2 s budget for a stop, the jobs get this; closing files gets the rest."""
MIC_READY_WAIT = 10.0
"""How long start-up waits for the first captured audio before reporting ready anyway."""
CAPTURE_STALL = 3.0
"""The watchdog withholds pings once capture has not advanced for this long."""
TIMERS_FILE = "timers.json"
CONNECTION_IDLE_SECONDS = 30.0
"""A connection idle this long may have been closed by the server (or a NAT): reopen
it at the wake word rather than on the turn's first request."""
THREAD_EXIT_WAIT = 0.3
"""After the loop closed, how long worker threads get to finish before we exit anyway."""

PinFactory = Any  # gpiozero.Factory; kept abstract so the core never imports gpiozero


@dataclass
class _Cloud:
    client: CloudClient
    stt: CloudSTT
    llm: CloudLLM
    tts: CloudTTS


@dataclass
class _Offline:
    vosk: VoskSTT | None
    piper: PiperTTS | None


# --- one factory per piece -------------------------------------------------------------


def build_cloud(settings: Settings) -> _Cloud | None:
    """Cloud engines on one client; no request is made here (start works offline)."""
    if not settings.cloud.enabled:
        return None
    key, warnings = load_api_key(settings.cloud)
    for warning in warnings:
        log.warning("%s", warning)
    client = CloudClient(settings.cloud, key)
    return _Cloud(client, CloudSTT(client), CloudLLM(client), CloudTTS(client))


def build_offline(settings: Settings) -> _Offline:
    """Vosk (if a model is installed) and Piper; slow loads, so call it in a thread."""
    vosk = None
    model_dir = find_vosk_model(settings.offline, settings.state_dir)
    if model_dir is None:
        log.warning("no Vosk model: offline speech recognition is unavailable")
    else:
        try:
            vosk = VoskSTT(model_dir)
        except EdgeAgentError as exc:  # the rest of the speaker still works
            log.error("Vosk model unusable, offline speech recognition is unavailable: %s",
                      exc)
    piper = None
    try:
        piper = PiperTTS(default_piper_voice(settings.offline))
    except EdgeAgentError as exc:
        log.error("no Piper voice, offline speech is unavailable: %s", exc)
    return _Offline(vosk, piper)


def build_player(settings: Settings, bus: EventBus) -> Player:
    player = Player(settings.audio.output, bus, volume=settings.audio.volume)
    player.open()
    return player


def build_microphone(settings: Settings, ring: RingBuffer, bus: EventBus) -> Microphone:
    return Microphone(settings.audio.input, ring, bus,
                      reconnect_max=settings.audio.reconnect_max_seconds)


class Daemon:
    """The running speaker. ``pin_factory`` replaces GPIO detection (tests pass a
    gpiozero MockFactory); None means "detect", False means "no GPIO"."""

    def __init__(self, settings: Settings, *, pin_factory: PinFactory | None = None) -> None:
        self.settings = settings
        self.bus = EventBus()
        self.notifier = Notifier()
        self.supervisor = Supervisor(on_crash=self._job_crashed)
        self._pin_factory_override = pin_factory
        self._event_log: EventLog | None = None
        self._event_log_unsubscribe: Any = None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once start-up is complete (when READY=1 goes to systemd)."""
        self.warmed = asyncio.Event()
        """Set once the background prewarm after start-up is over (benchmarks wait on it)."""
        self._prewarm: asyncio.Task | None = None
        self._warming: asyncio.Task | None = None
        self._reload_requested = False
        self._reload_lock = asyncio.Lock()
        self._unsubscribe: list[Any] = []
        self.agent: Agent
        self.player: Player
        self.microphone: Microphone
        self.ring: RingBuffer
        self.cloud: _Cloud | None = None
        self.offline: _Offline
        self.connectivity: Connectivity
        self.control: ControlServer | None = None
        self.button: PushButton | None = None
        self.leds: StatusLeds | None = None
        self._leds_unsubscribe: Any = None

    # --- start -----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._open_event_log()
        self._unsubscribe += [follow_state(self.bus), self.bus.subscribe(self._on_event)]
        self.ring = RingBuffer(s.audio.buffer_seconds)
        # Models and the speaker load in threads, side by side: the loop stays free.
        self.player, wake, self.offline = await asyncio.gather(
            asyncio.to_thread(build_player, s, self.bus),
            asyncio.to_thread(WakeDetector, s.wake),
            asyncio.to_thread(build_offline, s),
        )
        self.cloud = build_cloud(s)
        self.microphone = build_microphone(s, self.ring, self.bus)
        self.connectivity = Connectivity(s, self.bus, self._probe)
        self.agent = Agent(s, self.bus, ring=self.ring, player=self.player, wake=wake,
                           earcons=Earcons(s.earcons), connectivity=self.connectivity,
                           vosk=self.offline.vosk)
        self.timers = Timers(s.state_dir / TIMERS_FILE, self.agent.ring_timer)
        self.toolbox = device_tools(self.agent, self.timers)
        self.intents = LocalIntents(self.toolbox)
        self.conversation = Conversation(s.cloud)
        self.agent.turns = self._build_turns()
        self._start_controls()
        await self._start_control_socket()

        sup = self.supervisor
        sup.start("capture", self.microphone.run)
        sup.start("wake", self.agent.run_wake)
        sup.start("turns", self.agent.run_turns)
        sup.start("connectivity", self.connectivity.run)
        sup.start("timers", self.timers.run)
        # The watchdog pings from the loop, so a blocked loop stops them by itself;
        # the check covers capture, which the loop cannot see. It counts samples: a
        # device that keeps reopening without delivering must stop the pings too.
        self.watchdog = Watchdog(self.notifier, [
            progress_check("capture", lambda: self.ring.total, CAPTURE_STALL),
        ])
        sup.start("watchdog", self.watchdog.run)
        await self._wait_for_microphone()
        self.notifier.ready(self.status_line())
        self.ready.set()
        log.info("ready: %s", self.status_line())
        self._start_prewarm()

    def _start_prewarm(self) -> None:
        """Open the cloud connection and synthesize the offline notices in the
        background: neither is needed to listen, so READY=1 does not wait for them."""
        async def prewarm() -> None:
            if self.cloud is not None:
                await self.cloud.client.prewarm()
            await self.agent.turns.prewarm()

        self._prewarm = asyncio.create_task(prewarm(), name="prewarm")
        self._prewarm.add_done_callback(_log_failure)
        self._prewarm.add_done_callback(lambda _: self.warmed.set())

    def _open_event_log(self) -> None:
        if self._event_log is not None:
            self._event_log_unsubscribe()
            self._event_log.close()
            self._event_log = None
        if self.settings.log.events:
            self._event_log = EventLog(self.settings.log.events)
            self._event_log_unsubscribe = self.bus.subscribe(self._event_log)

    def _build_turns(self) -> TurnRunner:
        cloud = self.cloud
        return TurnRunner(
            self.settings, self.bus, self.player,
            connectivity=self.connectivity,
            cloud_stt=cloud.stt if cloud else None,
            vosk=self.offline.vosk,
            cloud_llm=cloud.llm if cloud else None,
            cloud_tts=cloud.tts if cloud else None,
            piper=self.offline.piper,
            intents=self.intents,
            toolbox=self.toolbox,
            conversation=self.conversation,
        )

    def _start_controls(self) -> None:
        s = self.settings.gpio
        override = self._pin_factory_override
        factory = None if override is False or not s.enabled else (
            override or make_pin_factory(s))
        if factory is None:
            return
        loop = asyncio.get_running_loop()
        if s.button != "":
            self.button = PushButton(s, factory, loop, self.agent.on_button,
                                     on_press=self.agent.on_press)
        self.leds = StatusLeds(s, factory)
        self._leds_unsubscribe = self.leds.attach(self.bus)
        self.leds.show(self.agent.state)

    def _stop_controls(self) -> None:
        if self._leds_unsubscribe is not None:
            self._leds_unsubscribe()
            self._leds_unsubscribe = None
        for device in (self.button, self.leds):
            if device is not None:
                device.close()
        self.button = self.leds = None

    async def _start_control_socket(self) -> None:
        self.control = ControlServer(self.settings.control_socket, self.agent)
        try:
            await self.control.start()
        except OSError as exc:
            # The speaker works without it; only `edge-agent status` and friends do not.
            log.error("no control socket at %s: %s", self.settings.control_socket, exc)
            self.control = None

    async def _wait_for_microphone(self) -> None:
        deadline = time.monotonic() + MIC_READY_WAIT
        # Polled: Microphone exposes health as a flag set from its own thread.
        while not self.microphone.healthy and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if not self.microphone.healthy:
            log.error("the microphone is not delivering audio yet; still trying")

    async def _probe(self) -> bool:
        return self.cloud is not None and await self.cloud.client.probe()

    def _on_event(self, event: Event) -> None:
        # systemctl status shows the line; keep it true when the network or mute changes.
        # Before READY=1 the line goes out with READY itself.
        if event.name in ("network", "mute", "audio_device") and self.ready.is_set():
            self.notifier.status(self.status_line())
        if event.name == "state" and event.fields["state"] == AgentState.LISTENING:
            self._get_network_ready()

    def _get_network_ready(self) -> None:
        """A turn starts and the user is still speaking: seconds in which an offline
        device can probe (a network that came back serves this turn) and an idle
        connection can be reopened (no TLS setup on the turn's first request)."""
        self.connectivity.nudge()
        if self.cloud is None or not self.connectivity.online:
            return
        if self._warming is None or self._warming.done():
            self._warming = asyncio.get_running_loop().create_task(
                self.cloud.client.prewarm(if_idle_for=CONNECTION_IDLE_SECONDS), name="warm")

    def _job_crashed(self, name: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if hasattr(self, "agent"):
            self.agent.report_error(name, message)
        else:
            self.bus.emit("error", where=name, message=message)

    def status_line(self) -> str:
        """The human line systemctl status shows."""
        agent = self.agent
        if not self.microphone.healthy:
            return "no microphone (retrying)"
        if not self.player.healthy:
            return "no speaker (retrying)"
        if agent.muted:
            return "muted"
        words = " or ".join(m.replace("_", " ") for m in agent.wake.model_names)
        network = "cloud online" if agent.online else "offline"
        if self.cloud is None:
            network = "cloud disabled"
        return f"listening for {words}, {network}"

    # --- run, signals, stop -------------------------------------------------------------

    async def run(self) -> None:
        """Start, then serve until SIGTERM/SIGINT; SIGHUP reloads the config.

        The handlers go in before start-up: systemd may send a reload the moment
        READY=1 arrives, and a signal without a handler would kill the daemon."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            await self.start()
            if self._reload_requested:
                self.request_reload()
            await self._stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()

    def request_stop(self) -> None:
        log.info("stopping")
        self._stopping.set()

    def request_reload(self) -> None:
        if not self.ready.is_set():
            self._reload_requested = True  # applied once start-up is complete
            return
        self._reload_requested = False
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """Within 2 s: jobs cancelled with a deadline, the output WAV finished, the
        event log closed, mute and timers persisted."""
        self.notifier.stopping()
        for task in (self._prewarm, self._warming):
            if task is not None:
                task.cancel()
        if hasattr(self, "agent"):
            self.player.stop()
        # Side by side, each with its own deadline, so the slowest sets the pace.
        await asyncio.gather(
            self.agent.close() if hasattr(self, "agent") else asyncio.sleep(0),
            self.supervisor.stop(STOP_DEADLINE),
            _within(self.control.close() if self.control else asyncio.sleep(0), 0.3),
            _within(self.cloud.client.aclose() if self.cloud else asyncio.sleep(0), 0.3),
        )
        self._stop_controls()
        if hasattr(self, "player"):
            await asyncio.to_thread(self.player.close)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._event_log is not None:
            self._event_log.close()
        log.info("stopped")

    # --- reload ----------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: a bad file is rejected and the old settings stay; a good one is
        applied in place, reopening audio or reloading models only where keys changed."""
        async with self._reload_lock:
            await self._reload()

    async def _reload(self) -> None:
        self.notifier.reloading()
        old = self.settings
        try:
            new = load_config(old.source) if old.source else old
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config rejected: %s", problem)
            self.bus.emit("config_rejected", errors=exc.problems)
            self.notifier.ready(self.status_line())
            return
        plan = plan_reload(old, new)
        await self._apply(new, plan)
        self.bus.emit("config_reloaded", keys=sorted(plan.keys))
        log.info("config reloaded: %s", plan.describe())
        self.notifier.ready(self.status_line())

    async def _apply(self, new: Settings, plan: ReloadPlan) -> None:
        self.settings = new
        agent = self.agent
        agent.settings = new
        if plan.restart_required:
            log.warning("these changes take effect after a restart: %s",
                        ", ".join(sorted(plan.restart_required)))
        if plan.set_log_level:
            set_level(new.log.level)
        if plan.reopen_event_log:
            self._open_event_log()
        if plan.reopen_output:
            self.player.stop()
            old_player = self.player
            self.player = await asyncio.to_thread(build_player, new, self.bus)
            agent.player = self.player
            await asyncio.to_thread(old_player.close)
        elif plan.set_volume:
            self.player.volume = new.audio.volume
        if plan.reopen_input:
            await self.supervisor.stop_job("capture")
            self.microphone = build_microphone(new, self.ring, self.bus)
            self.supervisor.start("capture", self.microphone.run)
        if plan.reload_wake:
            agent.wake = await asyncio.to_thread(WakeDetector, new.wake)
        if plan.reload_offline:
            self.offline = await asyncio.to_thread(build_offline, new)
            agent.vosk = self.offline.vosk
        if plan.rebuild_cloud:
            old_cloud, self.cloud = self.cloud, build_cloud(new)
            if old_cloud is not None:
                await old_cloud.client.aclose()
        if plan.rebuild_conversation:
            # New prompt or history limits: the old history was kept under the old ones.
            self.conversation = Conversation(new.cloud)
        if plan.restart_connectivity or plan.rebuild_cloud:
            await self.supervisor.stop_job("connectivity")
            self.connectivity = Connectivity(new, self.bus, self._probe)
            agent.connectivity = self.connectivity
            self.supervisor.start("connectivity", self.connectivity.run)
        if plan.reload_earcons:
            agent.earcons = Earcons(new.earcons)
        if plan.rebuild_controls:
            self._stop_controls()
            self._start_controls()
        if plan.reopen_control_socket:
            if self.control is not None:
                await self.control.close()
            await self._start_control_socket()
        # The running turn keeps its runner; the next one uses the new settings.
        agent.turns = self._build_turns()
        if plan.reload_offline or plan.rebuild_cloud:
            self._start_prewarm()


async def _within(closing: Awaitable[None], deadline: float) -> None:
    """Close something on the way out; a failure or a hang is logged, not raised."""
    try:
        await asyncio.wait_for(closing, deadline)
    except Exception as exc:
        log.warning("not closed cleanly: %r", exc)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


async def run(settings: Settings, *, pin_factory: PinFactory | None = None) -> None:
    """Run the daemon until SIGTERM."""
    await Daemon(settings, pin_factory=pin_factory).run()


def main(settings: Settings) -> int:
    """`edge-agent run`: 0 after a clean stop, 2 for a config (or key file) problem,
    1 when start-up fails otherwise (no model, no audio device)."""
    setup_logging(settings.log.level)
    code = 0
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run(settings))
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        code = 2
    except EdgeAgentError as exc:
        log.error("cannot start: %s", exc)
        code = 1
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # does not wait for worker threads, unlike asyncio.run()
    _exit_despite_stuck_threads(code)
    return code


def _exit_despite_stuck_threads(code: int) -> None:
    """A worker thread stuck in a library (inference, a device call) would keep the
    interpreter from exiting; systemd wants the stop within 2 s, so give them a
    moment, then leave without them."""
    deadline = time.monotonic() + THREAD_EXIT_WAIT
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("thread %s is stuck; exiting without it", thread.name)
            logging.shutdown()
            os._exit(code)
