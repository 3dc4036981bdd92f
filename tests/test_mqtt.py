"""Home Assistant over MQTT against a real Mosquitto on loopback: discovery as
HA reads it, commands and announcements through the agent, hostile payloads,
the broker dying mid-turn, and one answer per home from several daemons.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from edge_agent.config import MqttSettings
from edge_agent.errors import ConfigError
from edge_agent.events import EventBus
from edge_agent.mqtt.arbitration import Claim, GroupArbiter
from edge_agent.mqtt.commands import (
    MAX_PAYLOAD_BYTES,
    Command,
    CommandError,
    parse_announcement,
    parse_command,
)
from edge_agent.mqtt.topics import Topics
from edge_agent.testbed.broker import Broker
from edge_agent.testbed.fakecloud import FakeCloud, Latency
from edge_agent.testbed.fleet import QUIET, Fleet, Watcher
from edge_agent.tools.voices import piper, read_wav, silence
from edge_agent.wake import WakeDetection

# --- payloads, without a broker ------------------------------------------------------


@pytest.mark.parametrize(("payload", "command"), [
    (b'{"command": "mute"}', Command("mute")),
    (b'{"command": "volume", "value": 35}', Command("volume", volume=0.35)),
    (b'{"command": "say", "text": "  dinner\\nis ready "}', Command("say", text="dinner is ready")),
    (b'{"command": "listen", "extra": 1}', Command("listen")),
])
def test_commands_parse(payload: bytes, command: Command) -> None:
    assert parse_command(payload) == command


@pytest.mark.parametrize(("payload", "reason"), [
    (b"mute", "not JSON"),
    (b"[1, 2]", 'expected a JSON object with a "command"'),
    (b'{"command": 3}', 'expected a JSON object with a "command"'),
    (b'{"command": "self_destruct"}', "unknown command 'self_destruct'"),
    (b'{"command": "volume", "value": 1e400}', "from 0 to 100"),
    (b'{"command": "volume", "value": true}', "from 0 to 100"),
    (b'{"command": "volume", "value": 101}', "from 0 to 100"),
    (b'{"command": "say", "text": ""}', "nothing to say"),
    (b'{"command": "say", "text": ["a"]}', "must be a string"),
    (b'{"command": "say", "text": "' + b"a" * 3000 + b'"}', "more than 2000"),
    (b"\xff\xfe", "not UTF-8"),
    (b"{" * (MAX_PAYLOAD_BYTES + 1), "more than 16384"),
    (b"[" * 10000, "nested too deeply"),
])
def test_bad_commands_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(CommandError, match=reason.replace("(", r"\(")):
        parse_command(payload)


def test_announcements_take_plain_text_or_json() -> None:
    assert parse_announcement(b"The laundry is done.") == "The laundry is done."
    assert parse_announcement(b'{"text": "Door open"}') == "Door open"
    for bad in (b"", b"   ", b'{"text": 5}', b'{"text"', "é".encode() * 9000):
        with pytest.raises(CommandError):
            parse_announcement(bad)


def test_claims_rank_loudness_first_and_refuse_garbage() -> None:
    loud = Claim("a", "1", "hey_jarvis", 0.6, -20.0)
    clear = Claim("b", "2", "hey_jarvis", 0.99, -26.0)
    assert max([clear, loud], key=Claim.rank) is loud
    assert Claim.from_json(loud.to_json()) == loud
    for bad in (b"null", b"{}", b'{"speaker": "x"}', b"[" * 1000, b"x" * 2000,
                b'{"speaker": "a", "claim_id": "1", "model": "m", "score": "NaN", '
                b'"level_dbfs": 0}'):
        with pytest.raises(ValueError):
            Claim.from_json(bad)


def test_topic_names_are_checked() -> None:
    topics = Topics.from_settings(MqttSettings(host="h", device_id="kitchen", group="home"))
    assert topics.availability == "edge-agent/kitchen/availability"
    assert topics.claims == "edge-agent/group/home/wake"
    assert Topics.from_settings(MqttSettings(host="h")).device_id  # the host name
    for bad in ({"device_id": "kitchen/+"}, {"group": "#"}, {"discovery_prefix": ""}):
        with pytest.raises(ConfigError):
            Topics.from_settings(MqttSettings(host="h", **bad))



class Hub:
    """A broker in memory for the arbiters' rules alone: every publish reaches
    every arbiter (the sender too, as MQTT does) after ``delay`` seconds."""

    def __init__(self, delay: float = 0.005) -> None:
        self.delay = delay
        self.arbiters: list[GroupArbiter] = []
        self.connected = True

    async def publish_claim(self, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        for arbiter in self.arbiters:
            loop.call_later(self.delay, arbiter.on_claim, payload)

    def join(self, name: str, window: float = 0.2) -> GroupArbiter:
        arbiter = GroupArbiter(name, window, self, EventBus())
        self.arbiters.append(arbiter)
        return arbiter


HEY = WakeDetection("hey_jarvis", 0.9, 0)


async def _claim(arbiter: GroupArbiter, level: float, *, lag: float = 0.0,
                 engaged: bool = False) -> bool:
    heard_at = time.monotonic()
    await asyncio.sleep(lag)
    return await arbiter.answer(HEY, level_dbfs=level, heard_at=heard_at, engaged=engaged)


def test_arbiters_pick_the_loudest_and_a_late_loud_one_yields_to_the_answer() -> None:
    async def scenario() -> list[list[bool]]:
        hub = Hub()
        a, b, c = hub.join("a"), hub.join("b"), hub.join("c")
        on_time = await asyncio.gather(_claim(a, -30), _claim(b, -20), _claim(c, -25))
        await asyncio.sleep(1.0)
        # b hears it loudest but its detector lags past the window: a and c decided
        # without b's claim; a answers and says so, and b yields to that.
        late = await asyncio.gather(_claim(a, -22), _claim(b, -20, lag=0.6), _claim(c, -25))
        await asyncio.sleep(1.0)
        # b is speaking: the wake word is a barge-in meant for it, taken at once.
        engaged = await asyncio.gather(_claim(a, -10), _claim(b, -40, engaged=True))
        hub.connected = False
        alone = [await _claim(a, -90)]
        return [list(on_time), list(late), list(engaged), alone]

    on_time, late, engaged, alone = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert on_time == [False, True, False]
    assert late == [True, False, False]
    assert engaged == [False, True]
    assert alone == [True]


# --- one daemon on a real broker --------------------------------------------------------

def run(coro: object, timeout: float = 180.0) -> object:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


HA_COMPONENTS = {"sensor", "switch", "number", "binary_sensor", "button"}


@pytest.mark.slow
def test_discovery_availability_and_state_as_home_assistant_reads_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        with Broker(tmp_path) as broker, FakeCloud() as fake:
            async with Fleet(tmp_path, fake, broker, ["kitchen"], group="", extra=QUIET) as fleet:
                await fleet.connected()
                # Home Assistant starting later still finds everything: it is retained.
                async with Watcher(broker) as ha:
                    await ha.wait("edge-agent/kitchen/availability", b"online")
                    await ha.wait("edge-agent/kitchen/network")
                    seen = ha.latest()
                async with Watcher(broker, "edge-agent/kitchen/availability") as ha:
                    await ha.wait("edge-agent/kitchen/availability", b"online")
                    await fleet.speakers[0].daemon.stop()
                    # A clean stop says "offline" itself (the last will is for crashes).
                    await ha.wait("edge-agent/kitchen/availability", b"offline")
                fleet.speakers.clear()
        configs = {t: json.loads(p) for t, p in seen.items() if t.startswith("homeassistant/")}
        assert len(configs) == 10
        unique_ids = set()
        for topic, config in configs.items():
            prefix, component, node, entity, leaf = topic.split("/")
            assert (prefix, node, leaf) == ("homeassistant", "kitchen", "config")
            assert component in HA_COMPONENTS
            assert config["unique_id"] == f"edge_agent_kitchen_{entity}"
            unique_ids.add(config["unique_id"])
            assert config["availability_topic"] == "edge-agent/kitchen/availability"
            assert config["device"]["identifiers"] == ["edge_agent_kitchen"]
            assert config["name"] and config["origin"]["name"] == "edge-agent"
            for key in ("state_topic", "command_topic", "json_attributes_topic"):
                if key in config:
                    assert config[key].startswith("edge-agent/kitchen/")
            if component in ("switch", "number", "button"):
                assert config["command_topic"] == "edge-agent/kitchen/command"
            else:
                assert config["state_topic"] in seen, f"no state published for {entity}"
        assert len(unique_ids) == 10
        by_entity = {t.split("/")[3]: c for t, c in configs.items()}
        switch = by_entity["mute"]
        assert json.loads(switch["payload_on"]) == {"command": "mute"}
        assert seen["edge-agent/kitchen/state"] in (b"idle", b"offline")
        assert seen["edge-agent/kitchen/muted"] == b"OFF"
        assert seen["edge-agent/kitchen/volume"] == b"80"
        assert json.loads(seen["edge-agent/kitchen/timers"]) == {"next": None, "timers": []}

    run(scenario())


# --- several daemons: one answer per home ------------------------------------------------


def wake_question(gain: float) -> np.ndarray:
    """Silence, "hey jarvis", a question, silence: one talker, heard at ``gain``."""
    audio = np.concatenate([silence(1.0), piper("hey jarvis"), silence(0.15),
                            piper("tell me a joke"), silence(3.0)])
    return np.clip(audio.astype(np.float64) * gain, -32768, 32767).astype(np.int16)


@pytest.mark.slow
def test_three_speakers_hear_one_wake_word_and_only_the_loudest_answers(
        tmp_path: Path) -> None:
    gains = {"hall": 0.35, "kitchen": 1.0, "den": 0.6}

    async def scenario() -> None:
        with Broker(tmp_path) as broker, FakeCloud(transcript="tell me a joke") as fake:
            # A wide window: this is about who answers; the fleet bench measures the latency.
            async with Fleet(tmp_path, fake, broker, list(gains), window=0.5,
                             extra=QUIET) as fleet:
                await fleet.connected()
                await fleet.hear([wake_question(g) for g in gains.values()])
                await asyncio.to_thread(fake.wait_for_request, "tts", 1, 30.0)
                await asyncio.sleep(1.0)  # a second answer would have started by now
                by_name = {s.name: s for s in fleet.speakers}
                for speaker in fleet.speakers:
                    assert len(speaker.named("wake")) == 1, speaker.name
                    (verdict,) = speaker.named("wake_arbitration")
                    assert verdict.fields["claims"] == 3
                    assert verdict.fields["winner"] == "kitchen"
                    assert verdict.fields["won"] is (speaker.name == "kitchen")
                for name in ("hall", "den"):
                    states = [e.fields["state"] for e in by_name[name].named("state")]
                    assert "listening" not in states, name  # no turn, no earcon
                kitchen = [e.fields["state"] for e in by_name["kitchen"].named("state")]
                assert "listening" in kitchen and "thinking" in kitchen
        assert len(fake.requests_for("stt")) == 1
        assert len(fake.requests_for("llm")) == 1

    run(scenario())


# --- commands, hostile payloads, announcements ---------------------------------------------


async def publish(broker: Broker, topic: str, payload: bytes | str) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(topic, payload, qos=1)


@pytest.mark.slow
def test_commands_from_home_assistant_and_hostile_payloads(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    base = "edge-agent/den"

    async def scenario() -> None:
        with Broker(tmp_path) as broker, FakeCloud() as fake:
            async with Watcher(broker, f"{base}/#") as ha, \
                    Fleet(tmp_path, fake, broker, ["den"], group="", extra=QUIET) as fleet:
                agent = fleet.speakers[0].daemon.agent
                await fleet.connected()
                await ha.wait(f"{base}/muted", b"OFF")
                command = f"{base}/command"
                hostile = [
                    (command, b"mute please"),
                    (command, b'{"command": "self_destruct"}'),
                    (command, b'{"command": "volume", "value": "loud"}'),
                    (command, b"[" * 10000),
                    (command, b"\xff" * 100),
                    (f"{base}/announce", b"x" * 1_000_000),
                    (command, json.dumps({"command": "say", "text": "y" * 5000}).encode()),
                ]
                for topic, payload in hostile:
                    await publish(broker, topic, payload)
                await publish(broker, command, '{"command": "mute"}')
                await ha.wait(f"{base}/muted", b"ON")
                await ha.wait(f"{base}/state", b"muted")
                assert agent.muted
                muted_at = time.monotonic()
                await publish(broker, command, '{"command": "unmute"}')
                await ha.wait(f"{base}/muted", b"OFF", after=muted_at)
                assert not agent.muted
                await publish(broker, command, '{"command": "volume", "value": 30}')
                await ha.wait(f"{base}/volume", b"30")
                assert agent.volume == pytest.approx(0.3)
                await publish(broker, command, '{"command": "listen"}')
                await ha.wait(f"{base}/state", b"listening")
                assert fleet.speakers[0].daemon.mqtt.connected
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 7, refused
        for expected in ("not JSON", "unknown command 'self_destruct'", "from 0 to 100",
                         "nested too deeply", "not UTF-8", "more than 16384",
                         "more than 2000"):
            assert any(expected in line for line in refused), expected
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    run(scenario())


def tts_texts(fake: FakeCloud) -> list[str]:
    return [(r.json or {}).get("input", "") for r in fake.requests_for("tts")]


def dominant_hz(audio: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64) * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.slow
def test_an_announcement_starts_with_the_earcon_and_is_spoken(tmp_path: Path) -> None:
    async def scenario() -> FakeCloud:
        with Broker(tmp_path) as broker, FakeCloud() as fake:
            async with Fleet(tmp_path, fake, broker, ["hall"], group="") as fleet:
                await fleet.connected()
                await publish(broker, "edge-agent/hall/announce", "The laundry is done.")
                await asyncio.to_thread(fake.wait_for_request, "tts", 1, 30.0)
                speaker = fleet.speakers[0]
                async with asyncio.timeout(30):
                    while not speaker.named("audio_out_end"):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
        return fake

    fake = run(scenario())
    assert tts_texts(fake) == ["The laundry is done."]
    out = read_wav(tmp_path / "hall" / "out.wav")
    loud = np.flatnonzero(np.abs(out.astype(np.int32)) > 1000)
    first = loud[0]
    # The wake chime (880 Hz, then higher) first; the fake's 440 Hz "voice" after it.
    assert dominant_hz(out[first:first + 960]) == pytest.approx(880, abs=40)
    assert dominant_hz(out[loud[-1] - 3200:loud[-1]]) == pytest.approx(440, abs=20)


@pytest.mark.slow
def test_announcements_wait_for_the_turn_and_mute_drops_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    announce, command = "edge-agent/hall/announce", "edge-agent/hall/command"

    async def scenario() -> FakeCloud:
        fake = FakeCloud(transcript="tell me a joke", latency=Latency(llm_first_token=1.5))
        with Broker(tmp_path) as broker, fake:
            async with Fleet(tmp_path, fake, broker, ["hall"], group="", extra=QUIET) as fleet:
                speaker = fleet.speakers[0]
                await fleet.connected()
                await fleet.hear([wake_question(1.0)])
                async with asyncio.timeout(30):
                    while not speaker.named("state", state="thinking"):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                await publish(broker, announce, '{"text": "Dinner is ready."}')
                await asyncio.to_thread(fake.wait_for_request, "tts", 2, 30.0)
                async with asyncio.timeout(30):
                    while len(speaker.named("audio_out_end")) < 2:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                # The same, but muted while the announcement waits: it is dropped.
                await fleet.hear([wake_question(1.0)])
                async with asyncio.timeout(30):
                    while len(speaker.named("state", state="thinking")) < 2:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                await publish(broker, announce, "The door is open.")
                await asyncio.sleep(0.3)
                await publish(broker, command, '{"command": "mute"}')
                async with asyncio.timeout(30):
                    while not any("dropped: muted" in r.getMessage()  # noqa: ASYNC110
                                  for r in caplog.records):
                        await asyncio.sleep(0.05)
                states = [e.fields["state"] for e in speaker.named("state")]
                outs = [e.name for e in speaker.events if e.name.startswith("audio_out")]
        assert outs[:4] == ["audio_out_start", "audio_out_end"] * 2
        assert states[:5] == ["listening", "thinking", "speaking", "idle", "speaking"]
        return fake

    fake = run(scenario())
    # The reply was spoken whole before the announcement; the second never was.
    assert tts_texts(fake) == ["It is a fine day.", "Dinner is ready."]


# --- the broker dies mid-turn --------------------------------------------------------------


@pytest.mark.slow
def test_broker_killed_mid_turn_the_turn_completes_and_the_speaker_comes_back(
        tmp_path: Path) -> None:
    available = "edge-agent/attic/availability"

    async def scenario() -> float:
        fake = FakeCloud(transcript="tell me a joke", latency=Latency(llm_first_token=1.0))
        with fake, Broker(tmp_path) as broker:
            async with Fleet(tmp_path, fake, broker, ["attic"], extra=QUIET) as fleet:
                speaker = fleet.speakers[0]
                link = speaker.daemon.mqtt
                await fleet.connected()
                await fleet.hear([wake_question(1.0)])
                async with asyncio.timeout(30):
                    while not speaker.named("state", state="thinking"):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                broker.kill()
                async with asyncio.timeout(30):
                    while not speaker.named("turn_done"):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                (done,) = speaker.named("turn_done")
                assert done.fields["spoken"]
                assert not link.connected
                assert "MQTT broker unreachable" in speaker.daemon.status_line()
                assert speaker.daemon.agent.status()["mqtt"]["connected"] is False
                # A wake word while the broker is away is answered alone, at once.
                await fleet.hear([wake_question(1.0)])
                async with asyncio.timeout(30):
                    while len(speaker.named("turn_done")) < 2:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                assert len(speaker.named("wake_arbitration")) == 1  # the first wake word
                broker.start()
                back = time.monotonic()
                async with Watcher(broker, available) as ha:
                    online = await ha.wait(available, b"online", within=30)
                assert link.connected
        return online - back

    seconds = run(scenario())
    print(f"availability online {seconds:.2f} s after the broker's return")


# --- the [mqtt] section ------------------------------------------------------------------------


def test_mqtt_section_is_off_by_default_and_validated(tmp_path: Path) -> None:
    from edge_agent.config import Settings, parse_settings

    assert Settings().mqtt.host == ""
    settings = parse_settings({"mqtt": {"host": "broker.lan", "group": "home"}})
    assert (settings.mqtt.port, settings.mqtt.discovery_prefix) == (1883, "homeassistant")
    assert settings.mqtt.arbitration_window == pytest.approx(0.2)
    with pytest.raises(ConfigError) as caught:
        parse_settings({"mqtt": {"host": "b", "port": 0, "arbitration_window": 0,
                                 "password_file": "/nonexistent/hunter2", "groop": "x"}})
    text = "\n".join(caught.value.problems)
    for expected in ("mqtt.port", "mqtt.arbitration_window", "mqtt.password_file",
                     "mqtt.groop: unknown key; did you mean mqtt.group?"):
        assert expected in text
    assert "hunter2" not in text


def test_password_file_is_read_like_the_api_key_file(tmp_path: Path) -> None:
    from edge_agent.mqtt.service import load_password

    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    password = load_password(MqttSettings(host="b", password_file=str(secret)))
    assert password == "s3cret" and "s3cret" not in repr(password)
    secret.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by other users"):
        load_password(MqttSettings(host="b", password_file=str(secret)))
    secret.write_text("")
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        load_password(MqttSettings(host="b", password_file=str(secret)))


@pytest.mark.slow
def test_stop_from_home_assistant_cuts_an_announcement_short(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")

    async def scenario() -> None:
        with Broker(tmp_path) as broker, FakeCloud() as fake:
            async with Fleet(tmp_path, fake, broker, ["hall"], group="", extra=QUIET) as fleet:
                speaker = fleet.speakers[0]
                await fleet.connected()
                # The fake speaks 30 ms per character: about 12 s of "voice".
                await publish(broker, "edge-agent/hall/announce", "a long notice " * 30)
                async with asyncio.timeout(30):
                    while not speaker.named("audio_out_start"):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                await publish(broker, "edge-agent/hall/command", '{"command": "stop"}')
                async with asyncio.timeout(10):
                    while not any("announcement cut off" in r.getMessage()  # noqa: ASYNC110
                                  for r in caplog.records):
                        await asyncio.sleep(0.02)

    run(scenario())


@pytest.mark.slow
def test_retained_commands_and_announcements_are_ignored_live_ones_act(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_agent")
    command, announce = "edge-agent/porch/command", "edge-agent/porch/announce"

    def logged(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    async def scenario() -> FakeCloud:
        with Broker(tmp_path) as broker, FakeCloud() as fake:
            # An automation that published with retain=true, before the speaker starts.
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.publish(command, '{"command": "listen"}', qos=1, retain=True)
                await client.publish(announce, "Stale news.", qos=1, retain=True)
            async with Fleet(tmp_path, fake, broker, ["porch"], group="", extra=QUIET) as fleet:
                speaker = fleet.speakers[0]
                await fleet.connected()
                async with asyncio.timeout(10):
                    while len(logged("ignored a retained message")) < 2:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                await asyncio.sleep(1.0)  # a replayed turn or announcement would show by now
                assert not speaker.named("state", state="listening")
                assert not fake.requests_for("tts")
                # Clearing them as the log line says reaches the speaker as an empty
                # live message: nothing to refuse.
                for topic in (command, announce):
                    await asyncio.to_thread(subprocess.run, [
                        "mosquitto_pub", "-p", str(broker.port), "-r", "-n", "-t", topic],
                        check=True, timeout=10)
                await publish(broker, announce, "Fresh news.")
                await asyncio.to_thread(fake.wait_for_request, "tts", 1, 30.0)
                async with asyncio.timeout(30):
                    while not speaker.named("audio_out_end"):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                await publish(broker, command, '{"command": "listen"}')
                async with asyncio.timeout(10):
                    while not speaker.named("state", state="listening"):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
        return fake

    fake = run(scenario())
    assert tts_texts(fake) == ["Fresh news."]
    ignored = logged("ignored a retained message")
    assert len(ignored) == 2, ignored
    for topic in (command, announce):
        assert any(f"on {topic}:" in line and f"mosquitto_pub -r -n -t {topic}" in line
                   for line in ignored), topic
    assert not logged("refused")


@pytest.mark.slow
def test_mute_from_home_assistant_silences_an_announcement_and_drops_the_next(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    announce, command = "edge-agent/hall/announce", "edge-agent/hall/command"

    def logged(text: str) -> bool:
        return any(text in r.getMessage() for r in caplog.records)

    async def scenario() -> FakeCloud:
        with Broker(tmp_path) as broker, FakeCloud() as fake:
            async with Fleet(tmp_path, fake, broker, ["hall"], group="", extra=QUIET) as fleet:
                speaker = fleet.speakers[0]
                await fleet.connected()
                # The fake speaks 30 ms per character: about 12 s, and one waits behind it.
                await publish(broker, announce, "a long notice " * 30)
                await publish(broker, announce, "The door is open.")
                async with asyncio.timeout(30):
                    while not speaker.named("audio_out_start"):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                await publish(broker, command, '{"command": "mute"}')
                async with asyncio.timeout(10):  # the announcement alone would take 12 s
                    while not speaker.named("audio_out_end"):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                async with asyncio.timeout(10):
                    while not logged("1 announcement(s) dropped: muted"):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                (end,) = speaker.named("audio_out_end")
                assert end.fields["interrupted"] is True  # cut short, not played out
                assert speaker.daemon.agent.muted
                assert len(speaker.named("audio_out_start")) == 1
        return fake

    fake = run(scenario())
    assert logged("announcement cut off")
    texts = tts_texts(fake)  # the long one in chunks (the next fetched ahead); not the door
    assert texts and not any("door" in text for text in texts), texts
