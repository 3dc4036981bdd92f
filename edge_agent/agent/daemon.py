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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from edge_agent import __version__
from edge_agent.agent import heap
from edge_agent.agent.agent import Agent
from edge_agent.agent.supervisor import Supervisor, cancel_within
from edge_agent.agent.turn import TurnRunner
from edge_agent.audio import Microphone, Player, RingBuffer
from edge_agent.audio.echolink import NO_ECHO, EchoLink
from edge_agent.cloud import CloudClient, CloudLLM, CloudSTT, CloudTTS, Conversation
from edge_agent.cloud.stt import close_encoder
from edge_agent.config import GpioSettings, Settings, load_api_key, load_config
from edge_agent.controls import Earcons, PushButton, StatusLeds, make_pin_factory
from edge_agent.errors import CAUSES, CloudError, ConfigError, EdgeAgentError
from edge_agent.events import Event, EventBus, EventLog
from edge_agent.faults import Faults
from edge_agent.footprint import process_age, release_freed_heap, return_large_blocks
from edge_agent.intents import LocalIntents, Timers, device_tools
from edge_agent.logsetup import follow_state, set_level, setup_logging
from edge_agent.mqtt import MqttLink, build_mqtt
from edge_agent.net import Connectivity
from edge_agent.offline import PiperTTS, VoskSTT, default_piper_voice, find_vosk_model
from edge_agent.offline.models import missing_vosk_hint
from edge_agent.service import recordings
from edge_agent.service.control import ControlServer, SocketInUseError
from edge_agent.service.notify import Notifier, Watchdog, progress_check
from edge_agent.service.reload import ReloadPlan, plan_reload, refuse_dropped_keys
from edge_agent.service.report import StatusTarget, cloud_words, startup_line
from edge_agent.state import AgentState
from edge_agent.wake import WakeDetector

if TYPE_CHECKING:
    from edge_agent.cloud.realtime import RealtimeSTT

log = logging.getLogger(__name__)

STOP_DEADLINE = 1.0
"""Of systemd's 2 s budget for a stop, the jobs get this; closing files gets the rest."""
MIC_READY_WAIT = 10.0
"""How long start-up waits for the first captured audio before reporting ready anyway."""
FIRST_PROBE_WAIT = 2.0
"""How long start-up then waits for the cloud's first answer, so the ready line can say
whether it is online; a slower answer updates the status when it comes."""
CAPTURE_STALL = 3.0
"""The watchdog withholds pings once capture has not advanced for this long."""
TIMERS_FILE = "timers.json"
CONNECTION_IDLE_SECONDS = 30.0
"""A connection idle this long may have been closed by the server (or a NAT): reopen
it at the wake word rather than on the turn's first request."""
THREAD_EXIT_WAIT = 0.3
"""After the loop closed, how long worker threads get to finish before we exit anyway."""

PinFactory = Any  # gpiozero.Factory; kept abstract so the core never imports gpiozero
T = TypeVar("T")


@dataclass
class _Cloud:
    client: CloudClient
    stt: CloudSTT
    llm: CloudLLM
    tts: CloudTTS
    stream: RealtimeSTT | None = None
    """Recognition while the user speaks (cloud.stt_streaming)."""


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
    stream = None
    if settings.cloud.stt_streaming:
        from edge_agent.cloud.realtime import RealtimeSTT  # websockets: only when used

        stream = RealtimeSTT(settings.cloud, key)
    return _Cloud(client, CloudSTT(client), CloudLLM(client), CloudTTS(client), stream)


def cloud_unavailable(settings: Settings, cloud: _Cloud | None) -> CloudError | None:
    """Why the cloud cannot be used whatever the network does, or None."""
    if cloud is None:
        return CloudError(CAUSES["disabled"], offline=True, cause="disabled")
    if not cloud.client.has_key:
        where = settings.cloud.api_key_file or f"${settings.cloud.api_key_env}"
        return CloudError(f"{CAUSES['no_key']} (set it in {where})", offline=True,
                          cause="no_key")
    return None


async def probe_cloud(cloud: _Cloud | None) -> bool:
    """Connectivity's probe: True when the service answers and takes the key; raises
    CloudError with the cause otherwise (kept for status and the notices)."""
    if cloud is None:
        return False
    await cloud.client.check()
    return True


def build_offline(settings: Settings) -> _Offline:
    """Vosk (if a model is installed) and Piper, side by side (neither needs the
    other); slow loads, so call it in a thread."""
    with ThreadPoolExecutor(1, thread_name_prefix="piper-load") as pool:
        piper = pool.submit(_build_piper, settings)
        return _Offline(_build_vosk(settings), piper.result())


def _build_vosk(settings: Settings) -> VoskSTT | None:
    vosk = None
    model_dir = find_vosk_model(settings.offline, settings.state_dir)
    if model_dir is None:
        log.warning("offline speech recognition is unavailable: %s",
                    missing_vosk_hint(settings.state_dir))
    else:
        try:
            vosk = VoskSTT(model_dir)
        except EdgeAgentError as exc:  # the rest of the speaker still works
            log.error("Vosk model unusable, offline speech recognition is unavailable: %s",
                      exc)
    return vosk


def _build_piper(settings: Settings) -> PiperTTS | None:
    try:
        return PiperTTS(default_piper_voice(settings.offline))
    except EdgeAgentError as exc:
        log.error("no Piper voice, offline speech is unavailable: %s", exc)
        return None


def build_wake(settings: Settings, echo: EchoLink) -> WakeDetector:
    """The wake word, told what the speaker plays; two detectors load (slow: in a thread)."""
    wake = WakeDetector(settings.wake)
    wake.follow_playback(echo.ready, echo.reference)
    return wake


def build_player(settings: Settings, bus: EventBus, echo: EchoLink = NO_ECHO) -> Player:
    player = Player(settings.audio.output, bus, volume=settings.audio.volume,
                    echo_reference=echo.reference, room=echo.room)
    player.open()
    return player


def build_microphone(settings: Settings, ring: RingBuffer, bus: EventBus,
                     echo: EchoLink = NO_ECHO) -> Microphone:
    return Microphone(settings.audio.input, ring, bus,
                      reconnect_max=settings.audio.reconnect_max_seconds,
                      canceller=echo.canceller, room=echo.room)


class Daemon:
    """The running speaker. ``pin_factory`` replaces GPIO detection (tests pass a
    gpiozero MockFactory); None means "detect", False means "no GPIO"."""

    def __init__(self, settings: Settings, *, pin_factory: PinFactory | None = None) -> None:
        self.settings = settings
        self.bus = EventBus()
        self.faults = Faults(self.bus)
        self.notifier = Notifier()
        self.supervisor = Supervisor(on_crash=self._job_crashed)
        self._pin_factory_override = pin_factory
        self._event_log: EventLog | None = None
        self._event_log_unsubscribe: Any = None
        self._stop_recordings: Any = lambda: None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once start-up is complete (when READY=1 goes to systemd)."""
        self.warmed = asyncio.Event()
        """Set once the background prewarm after start-up is over (benchmarks wait on it)."""
        self._prewarm: asyncio.Task | None = None
        self._first_probe: asyncio.Task | None = None
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
        self.mqtt: MqttLink | None = None

    # --- start -----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._claim_control_socket()  # first: a second daemon stops before loading models
        phases = {"imports": process_age() or 0.0}
        began = time.monotonic()
        self._open_event_log()
        self._unsubscribe += [follow_state(self.bus), self.bus.subscribe(self._on_event)]
        self.ring = RingBuffer(s.audio.buffer_seconds)
        self.echo = EchoLink.build(s.echo, s.audio, self.ring)
        self._open_recordings()
        # Models and the speaker load in threads, side by side: the loop stays free.
        self.player, wake, self.offline = await asyncio.gather(
            asyncio.to_thread(_timed, phases, "speaker", build_player, s, self.bus, self.echo),
            asyncio.to_thread(_timed, phases, "wake", build_wake, s, self.echo),
            asyncio.to_thread(_timed, phases, "offline", build_offline, s),
        )
        phases["loads"] = time.monotonic() - began
        self.cloud = build_cloud(s)
        self.microphone = build_microphone(s, self.ring, self.bus, self.echo)
        self.connectivity = self._build_connectivity(s)
        log.info("%s", startup_line(config=s.source, engines=self._engines(),
                                    cloud_url=s.cloud.base_url))
        self.agent = Agent(s, self.bus, ring=self.ring, player=self.player, wake=wake,
                           earcons=Earcons(s.earcons), connectivity=self.connectivity,
                           vosk=self.offline.vosk, faults=self.faults)
        self.timers = Timers(s.state_dir / TIMERS_FILE, self.agent.ring_timer,
                             faults=self.faults)
        self.agent.status_extras["echo"] = self.echo.status
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
        self.mqtt = build_mqtt(s, self.agent, self.bus, self.timers)
        if self.mqtt is not None:
            sup.start("mqtt", self.mqtt.run)
        # The watchdog pings from the loop, so a blocked loop stops them by itself;
        # the check covers capture, which the loop cannot see. It counts samples: a
        # device that keeps reopening without delivering must stop the pings too.
        self.watchdog = Watchdog(self.notifier, [
            progress_check("capture", lambda: self.ring.total, CAPTURE_STALL),
            lambda: self.player.stalled(),
        ])
        sup.start("watchdog", self.watchdog.run)
        phases["microphone"] = time.monotonic()
        await self._wait_for_microphone()
        phases["microphone"] = time.monotonic() - phases["microphone"]
        release_freed_heap()  # what parsing the models and imports left behind
        await _within(self.connectivity.checked.wait(), FIRST_PROBE_WAIT, quiet=True)
        self.notifier.ready(self.status_line())
        self.ready.set()
        log.info("ready: %s", self.status_line())
        log.info("started in %.2f s: %s", phases["imports"] + time.monotonic() - began,
                 ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items()))
        self._start_prewarm()
        if not self.connectivity.checked.is_set():
            self._follow_first_probe()

    def _follow_first_probe(self) -> None:
        """The ready line said "checking the cloud": say what the first answer was."""
        connectivity = self.connectivity

        async def follow() -> None:
            await connectivity.checked.wait()
            if connectivity is self.connectivity:
                self.notifier.status(self.status_line())
                log.info("status: %s", self.status_line())

        self._first_probe = asyncio.create_task(follow(), name="first-probe")
        self._first_probe.add_done_callback(_log_failure)

    def _build_connectivity(self, s: Settings) -> Connectivity:
        return Connectivity(s, self.bus, self._probe,
                            unavailable=cloud_unavailable(s, self.cloud))

    def _engines(self) -> dict[str, str]:
        """Which engine each stage uses first, for the start-up line."""
        cloud = "cloud" if self.cloud is not None else None
        vosk = "vosk" if self.offline.vosk is not None else None
        piper = "piper" if self.offline.piper is not None else None
        return {"wake": "+".join(self.settings.wake.models),
                "stt": " then ".join(e for e in (cloud, vosk) if e) or "none",
                "llm": cloud or "local intents",
                "tts": " then ".join(e for e in (cloud, piper) if e) or "none"}

    def about(self) -> dict[str, Any]:
        """Which daemon this is and how its cloud is, for the status socket."""
        cloud = {**self.connectivity.status(), "enabled": self.cloud is not None,
                 "url": self.settings.cloud.base_url}
        return {"daemon": {"pid": os.getpid(), "version": __version__,
                           "config": str(self.settings.source or ""),
                           "socket": str(self.settings.control_socket)},
                "cloud": cloud}

    def _start_prewarm(self) -> None:
        """Open the cloud connection and synthesize the offline notices in the
        background: neither is needed to listen, so READY=1 does not wait for them."""
        async def prewarm() -> None:
            if self.cloud is not None:
                await self.cloud.client.prewarm()
            await self.agent.turns.prewarm()

        def over(task: asyncio.Task) -> None:
            # Said (failed or not: a failure is logged on its own) so an owner, and
            # the rest benchmark, can tell start-up work from idling.
            if not task.cancelled():
                frozen, took = heap.settle()
                log.info("warm: start-up work over (%.1f s); %d objects frozen out of "
                         "later collections in %.0f ms", time.monotonic() - began, frozen,
                         took * 1000)
            self.warmed.set()

        began = time.monotonic()
        self._prewarm = asyncio.create_task(prewarm(), name="prewarm")
        self._prewarm.add_done_callback(_log_failure)
        self._prewarm.add_done_callback(over)

    def _open_event_log(self) -> None:
        events = self.settings.log.events
        self._use_event_log(EventLog(events, on_error=self._event_log_error) if events else None)

    def _event_log_error(self, reason: str | None) -> None:
        if reason is None:
            self.faults.clear("event_log")
        else:
            self.faults.set("event_log", reason)

    def _open_recordings(self) -> None:
        self._stop_recordings()
        self._stop_recordings = recordings.attach(self.settings.log.debug_recordings,
                                                  self.ring, self.bus, self.echo.raw)

    def _build_turns(self) -> TurnRunner:
        cloud = self.cloud
        self.agent.cloud_stream = cloud.stream if cloud else None
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

    def _start_controls(self, gpio: GpioSettings | None = None) -> None:
        s = gpio or self.settings.gpio
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

    def _claim_control_socket(self) -> None:
        """SocketInUseError (start fails) when another daemon serves the socket."""
        self.control = ControlServer(self.settings.control_socket, None)
        try:
            self.control.claim()
        except OSError as exc:
            log.error("no control socket at %s: %s", self.settings.control_socket, exc)
            self.control = None

    async def _start_control_socket(self) -> None:
        if self.control is None or self.control.path != self.settings.control_socket:
            self.control = ControlServer(self.settings.control_socket, None)
        self.control.target = StatusTarget(self.agent, self.about)
        try:
            await self.control.start()
        except (OSError, SocketInUseError) as exc:
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
        return await probe_cloud(self.cloud)

    def _on_event(self, event: Event) -> None:
        # systemctl status shows the line; keep it true when the network or mute changes.
        # Before READY=1 the line goes out with READY itself.
        if (event.name in ("network", "mute", "audio_device", "mqtt", "fault")
                and self.ready.is_set()):
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
        if agent.faults:
            return "failing: " + "; ".join(agent.faults.as_dict().values())
        words = " or ".join(m.replace("_", " ") for m in agent.wake.model_names)
        cloud = self.connectivity.status() if self.cloud is not None else None
        network = cloud_words(cloud)
        if self.mqtt is not None and not self.mqtt.connected:
            network += ", MQTT broker unreachable"
        return f"listening for {words}, {network}"

    # --- run, signals, stop -------------------------------------------------------------

    async def run(self) -> None:
        """Start, then serve until SIGTERM/SIGINT; SIGHUP reloads the config.

        The handlers go in before start-up: systemd may send a reload the moment
        READY=1 arrives, and a signal without a handler would kill the daemon. They
        stay until stop() is done: a second SIGTERM or a SIGHUP must not kill it
        mid-stop. A stop during start-up (models loading, waiting for the
        microphone) cancels the start: no READY=1, and out within systemd's budget."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            if not await self._start_unless_stopped():
                return
            if self._reload_requested:
                self.request_reload()
            await self._stopping.wait()
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _start_unless_stopped(self) -> bool:
        """start(), cancelled when a stop is requested first; False when it was."""
        starting = asyncio.create_task(self.start(), name="start")
        stopping = asyncio.create_task(self._stopping.wait(), name="stop-request")
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            starting.cancel()  # run() itself was cancelled: so is the start
            raise
        finally:
            stopping.cancel()
        if starting.done():
            starting.result()  # start-up errors propagate
            return True
        log.info("stop requested during start-up; not starting")
        # Threads loading models cannot be interrupted: they are abandoned.
        await cancel_within([starting], STOP_DEADLINE)
        return False

    def request_stop(self) -> None:
        if self._stopping.is_set():
            log.info("already stopping")
            return
        log.info("stopping")
        self._stopping.set()

    def request_reload(self) -> None:
        if self._stopping.is_set():
            log.info("reload ignored: stopping")
            return
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
        for task in (self._prewarm, self._warming, self._first_probe):
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
        self._end_workers()
        self._stop_controls()
        if hasattr(self, "player"):
            await asyncio.to_thread(self.player.close)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._event_log is not None:
            self._event_log.close()
        self._stop_recordings()
        log.info("stopped")

    def _end_workers(self) -> None:
        """The engines' idle worker threads (the start-up rehearsal and prewarm start
        them even if no turn ran) would outlive the loop and be reported stuck."""
        close_encoder()
        offline = getattr(self, "offline", None)  # absent if stopped while loading
        if offline is not None and offline.piper is not None:
            offline.piper.close()

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
            # Off the loop: the file and every path it names are checked on disk.
            new = await asyncio.to_thread(load_config, old.source) if old.source else old
            refuse_dropped_keys(old, new)
            plan = plan_reload(old, new)
            prepared = await self._prepare(new, plan)
        except Exception as exc:  # whatever failed, the old settings stay in force
            problems = exc.problems if isinstance(exc, ConfigError) else [
                f"{type(exc).__name__}: {exc}"]
            for problem in problems:
                log.error("config rejected: %s", problem)
            self.bus.emit("config_rejected", errors=problems)
            self.notifier.ready(self.status_line())
            return
        try:
            await self._apply(new, plan, prepared)
        except Exception as exc:  # only swaps and closes are left: rare, but say so
            log.error("config applied only in part", exc_info=exc)
            self.agent.report_error("reload", f"{type(exc).__name__}: {exc}")
        else:
            self.bus.emit("config_reloaded", keys=sorted(plan.keys))
            log.info("config reloaded: %s", plan.describe())
            heap.settle()  # what the reload replaced is collected, what it made frozen
        self.notifier.ready(self.status_line())

    async def _prepare(self, new: Settings, plan: ReloadPlan) -> _Prepared:
        """Open everything the new settings need before any of it is used: a key
        file, log file, device or model that fails rejects the reload whole."""
        ready = _Prepared()
        try:
            if plan.reopen_event_log and new.log.events:
                ready.event_log = await asyncio.to_thread(self._open_new_event_log, new)
            if plan.rebuild_cloud:
                ready.cloud = await asyncio.to_thread(build_cloud, new)
            elif new.cloud.enabled:  # the running client keeps its key; a restart would not
                await asyncio.to_thread(load_api_key, new.cloud)
            if plan.reload_offline:
                ready.offline = await asyncio.to_thread(build_offline, new)
                _require_configured_models(new, ready.offline)
            if plan.reload_wake:
                ready.wake = await asyncio.to_thread(build_wake, new, self.echo)
            if plan.reopen_output:
                ready.player = await asyncio.to_thread(build_player, new, self.bus, self.echo)
            if plan.rebuild_controls:  # last: the new pins may be the old ones
                self._swap_controls(new.gpio)
        except BaseException:
            await ready.discard()
            raise
        return ready

    async def _apply(self, new: Settings, plan: ReloadPlan, ready: _Prepared) -> None:
        self.settings = new
        agent = self.agent
        agent.settings = new
        if plan.restart_required:
            log.warning("these changes take effect after a restart: %s",
                        ", ".join(sorted(plan.restart_required)))
        if plan.set_log_level:
            set_level(new.log.level)
        if plan.reopen_event_log:
            self._use_event_log(ready.event_log)
            self._open_recordings()
        if ready.player is not None:
            self.player.stop()
            old_player, self.player = self.player, ready.player
            agent.player = self.player
            await asyncio.to_thread(old_player.close)
        elif plan.set_volume:
            self.player.volume = new.audio.volume
        if plan.reopen_input:
            await self.supervisor.stop_job("capture")
            self.microphone = build_microphone(new, self.ring, self.bus, self.echo)
            self.supervisor.start("capture", self.microphone.run)
        if ready.wake is not None:
            agent.wake = ready.wake
        if ready.offline is not None:
            self.offline = ready.offline
            agent.vosk = self.offline.vosk
        if plan.rebuild_cloud:
            old_cloud, self.cloud = self.cloud, ready.cloud
            if old_cloud is not None:
                await old_cloud.client.aclose()
        if plan.rebuild_conversation:
            # New prompt or history limits: the old history was kept under the old ones.
            self.conversation = Conversation(new.cloud)
        if plan.restart_connectivity or plan.rebuild_cloud:
            await self.supervisor.stop_job("connectivity")
            self.connectivity = self._build_connectivity(new)
            agent.connectivity = self.connectivity
            self.supervisor.start("connectivity", self.connectivity.run)
        if plan.reload_earcons:
            agent.earcons = Earcons(new.earcons)
        if plan.reopen_control_socket:
            if self.control is not None:
                await self.control.close()
            await self._start_control_socket()
        # The running turn keeps its runner; the next one uses the new settings.
        agent.turns = self._build_turns()
        if plan.reload_offline or plan.rebuild_cloud:
            self._start_prewarm()

    def _swap_controls(self, gpio: GpioSettings) -> None:
        """The button and LEDs on new pins, or back on the old ones if they fail."""
        self._stop_controls()
        try:
            self._start_controls(gpio)
        except Exception:
            self._stop_controls()
            self._start_controls(self.settings.gpio)
            raise

    def _open_new_event_log(self, new: Settings) -> EventLog:
        """A reload's event log, open now: one that cannot be opened is a
        mistake in the new file (rejected), not a fault to retry."""
        failures: list[str | None] = []
        event_log = EventLog(new.log.events, on_error=failures.append)
        if failures and failures[-1] is not None:
            event_log.close()
            raise ConfigError(f"log.events: {failures[-1]}")
        event_log.on_error = self._event_log_error
        return event_log

    def _use_event_log(self, event_log: EventLog | None) -> None:
        """Swap the event log for ``event_log`` (already open, or None for none)."""
        if self._event_log is not None:
            self._event_log_unsubscribe()
            self._event_log.close()
        self._event_log = event_log
        if event_log is not None:
            self._event_log_unsubscribe = self.bus.subscribe(event_log)


@dataclass
class _Prepared:
    """What a reload opened ahead of applying it; discarded if the reload fails."""

    event_log: EventLog | None = None
    cloud: _Cloud | None = None
    offline: _Offline | None = None
    wake: WakeDetector | None = None
    player: Player | None = None

    async def discard(self) -> None:
        if self.event_log is not None:
            self.event_log.close()
        if self.player is not None:
            await asyncio.to_thread(self.player.close)
        if self.cloud is not None:
            await _within(self.cloud.client.aclose(), 0.3)


def _require_configured_models(settings: Settings, offline: _Offline) -> None:
    """At start a model that fails to load leaves that engine off; on reload the
    running one is better than none, so a configured model must load."""
    if settings.offline.vosk_model and offline.vosk is None:
        raise ConfigError(f"offline.vosk_model: the Vosk model in "
                          f"{settings.offline.vosk_model} does not load (see the log)")
    if settings.offline.piper_voice and offline.piper is None:
        raise ConfigError(f"offline.piper_voice: the Piper voice "
                          f"{settings.offline.piper_voice} does not load (see the log)")


def _timed(phases: dict[str, float], name: str, load: Callable[..., T], *args: Any) -> T:
    """Run one start-up load, noting its seconds under ``name``."""
    began = time.monotonic()
    try:
        return load(*args)
    finally:
        phases[name] = time.monotonic() - began


async def _within(closing: Awaitable[Any], deadline: float, *, quiet: bool = False) -> None:
    """Close (or wait for) something; a failure or a hang is logged, not raised.
    ``quiet``: a hang is expected now and then, so it is not worth a warning."""
    try:
        await asyncio.wait_for(closing, deadline)
    except TimeoutError:
        if not quiet:
            log.warning("not closed within %g s", deadline)
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
    return_large_blocks()
    code = 0
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run(settings))
        # Stopped: a late SIGTERM or SIGHUP must not turn the clean exit into a kill.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
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
