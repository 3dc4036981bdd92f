"""Reload planning: which keys changed and what a daemon must redo for them,
from real settings parsed the way a SIGHUP reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import Settings, load_config, parse_settings
from edge_agent.service.reload import flatten, is_classified, plan_reload


def settings(**sections: dict[str, Any]) -> Settings:
    return parse_settings(dict(sections))


BASE = settings()


def test_identical_settings_need_nothing() -> None:
    plan = plan_reload(BASE, settings())
    assert not plan
    assert plan.actions == frozenset()
    assert plan.describe() == "nothing changed"


@pytest.mark.parametrize(("change", "actions"), [
    ({"audio": {"input": "USB Audio"}}, {"reopen_input"}),
    ({"audio": {"output": "hifiberry"}}, {"reopen_output"}),
    ({"audio": {"volume": 0.3}}, {"set_volume"}),
    ({"audio": {"buffer_seconds": 60.0}}, {"restart_required"}),
    ({"audio": {"preroll_seconds": 0.5}}, set()),
    ({"wake": {"threshold": 0.7}}, {"reload_wake"}),
    ({"wake": {"models": ["hey_jarvis", "alexa"]}}, {"reload_wake"}),
    ({"turn": {"end_silence": 1.0, "max_seconds": 10.0}}, set()),
    ({"cloud": {"llm_model": "llama-3.1-8b"}}, {"rebuild_cloud"}),
    ({"cloud": {"timeouts": {"stt": 4.0}}}, {"rebuild_cloud"}),
    ({"cloud": {"system_prompt": "Be brief."}}, {"rebuild_conversation"}),
    ({"cloud": {"history_turns": 2, "base_url": "http://127.0.0.1:8080/v1"}},
     {"rebuild_conversation", "rebuild_cloud"}),
    ({"offline": {"stt_mode": "parallel", "prefer_local": False}}, set()),
    ({"offline": {"probe_interval": 2.0}}, {"restart_connectivity"}),
    ({"gpio": {"button": 27}}, {"rebuild_controls"}),
    ({"earcons": {"wake": "off"}}, {"reload_earcons"}),
    ({"log": {"level": "debug"}}, {"set_log_level"}),
    ({"log": {"events": "/tmp/events.jsonl"}}, {"reopen_event_log"}),
    ({"service": {"control_socket": "/tmp/c.sock"}}, {"reopen_control_socket"}),
])
def test_each_change_redoes_only_what_it_must(
    change: dict[str, Any], actions: set[str]
) -> None:
    plan = plan_reload(BASE, settings(**change))
    assert plan.actions == actions
    assert plan.changed >= set(change)


def test_properties_and_nested_sections() -> None:
    plan = plan_reload(BASE, settings(
        audio={"volume": 0.2}, cloud={"timeouts": {"llm_idle": 1.0}}))
    assert plan.keys == {"audio.volume", "cloud.timeouts.llm_idle"}
    assert plan.changed == {"audio", "cloud", "cloud.timeouts"}
    assert plan.set_volume and plan.rebuild_cloud
    assert not (plan.reopen_input or plan.reopen_output or plan.reload_wake
                or plan.reload_offline or plan.rebuild_controls)
    assert plan.describe() == "audio.volume, cloud.timeouts.llm_idle"


def test_a_moved_state_dir_or_resized_ring_waits_for_a_restart(tmp_path: Path) -> None:
    plan = plan_reload(BASE, settings(service={"state_dir": str(tmp_path)},
                                      audio={"buffer_seconds": 60.0, "volume": 0.5}))
    assert plan.restart_required == {"service.state_dir", "audio.buffer_seconds"}
    assert plan.set_volume  # the rest is still applied
    assert not plan_reload(BASE, settings(audio={"volume": 0.1})).restart_required


def test_a_changed_vosk_model_reloads_offline_models(tmp_path: Path) -> None:
    plan = plan_reload(BASE, settings(offline={"vosk_model": str(tmp_path)}))
    assert plan.reload_offline
    assert plan.actions == {"reload_offline"}


def test_the_file_a_config_came_from_is_not_a_change(tmp_path: Path) -> None:
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text("[audio]\nvolume = 0.5\n")
        (tmp_path / name).chmod(0o644)
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "b.toml")
    assert a.source != b.source
    assert not plan_reload(a, b)
    assert plan_reload(BASE, a).keys == {"audio.volume"}


def test_every_setting_is_classified() -> None:
    """A key added to config.py must be given reload effects (or none, on purpose)."""
    unclassified = [key for key in flatten(BASE) if not is_classified(key)]
    assert unclassified == []


# --- a torn file ----------------------------------------------------------------------


def test_a_file_that_drops_keys_the_running_one_set_is_refused(tmp_path: Path) -> None:
    """Finding 6: a config caught half written parsed, and cloud.enabled came back
    as its default (true). A reload never puts defaults in place of set keys."""
    from edge_agent.errors import ConfigError
    from edge_agent.service.reload import refuse_dropped_keys

    path = tmp_path / "config.toml"
    full = "[audio]\nvolume = 0.5\n\n[cloud]\nenabled = false\nllm_model = 'x'\n"
    path.write_text(full)
    running = load_config(path)
    path.write_text(full[: full.index("enabled")])  # torn at a line end: still parses
    torn = load_config(path)
    assert torn.cloud.enabled  # what the old reload would have applied
    with pytest.raises(ConfigError) as info:
        refuse_dropped_keys(running, torn)
    message = info.value.problems[0]
    assert "cloud.enabled (default true)" in message and "cloud.llm_model" in message
    # Adding or changing keys is what reloads are for.
    path.write_text(full.replace("0.5", "0.7") + "[wake]\nthreshold = 0.6\n")
    refuse_dropped_keys(running, load_config(path))
    # Built-in defaults (no file) have set nothing.
    refuse_dropped_keys(Settings(), torn)


# --- the daemon: a reload applies whole or not at all -----------------------------------


def daemon_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: Any,
                    edit: Any = None, *, gpio: bool = False) -> None:
    """Run ``body(harness, notify_socket)`` against an in-process daemon with a fake
    cloud, a silent .wav microphone and systemd's notify socket; ``edit`` changes
    the config text it starts with."""
    import asyncio

    from edge_agent.testbed.fakecloud import FakeCloud
    from edge_agent.testbed.harness import Harness, run
    from edge_agent.tools.voices import silence
    from tests.test_daemon import notify_socket, receive

    async def scenario(sock: Any) -> None:
        with FakeCloud() as fake:
            harness = Harness(tmp_path, fake, silence(60.0), gpio=gpio)
            if edit is not None:
                harness.config.write_text(edit(harness.config.read_text()))
            async with harness as h:
                await asyncio.to_thread(receive, sock, "READY=1", 10)
                await body(h, sock)

    with notify_socket() as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.getsockname())
        run(scenario(sock), timeout=180)


async def rejected_with_ready(h: Any, sock: Any, count: int = 1) -> list[str]:
    """Reload; the reload must be rejected and READY=1 follow RELOADING=1."""
    import asyncio

    from tests.test_daemon import receive

    await asyncio.wait_for(h.daemon.reload(), 30)
    rejected = await h.wait_event("config_rejected", count=count)
    lines = await asyncio.to_thread(receive, sock, "READY=1", 5)
    assert lines.index("RELOADING=1") < lines.index("READY=1")
    return rejected.fields["errors"]


@pytest.mark.slow
def test_a_failing_reload_changes_nothing_and_the_daemon_stays_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 8: an emptied key file or an event log that cannot be opened was
    found after the new settings were stored: RELOADING=1 without READY=1, no
    config_rejected, and the event log silently gone."""
    key = tmp_path / "key"
    key.write_text("sk-test\n")
    key.chmod(0o600)

    def with_key(text: str) -> str:
        return text.replace("[cloud]\n", f"[cloud]\napi_key_file = '{key}'\n")

    async def body(h: Any, sock: Any) -> None:
        base = h.config.read_text()
        # An emptied key file, found only when the new cloud client was built.
        key.write_text("")
        h.config.write_text(base.replace("[cloud]\n", "[cloud]\nllm_model = 'other'\n"))
        cloud = h.daemon.cloud
        errors = await rejected_with_ready(h, sock)
        assert any("is empty" in e for e in errors), errors
        assert h.daemon.settings.cloud.llm_model == "gpt-4o-mini"
        assert h.daemon.cloud is cloud and h.daemon.agent.settings is h.daemon.settings
        # The same with no cloud change: a restart would fail on it, so say so now.
        h.config.write_text(base.replace("[audio]\n", "[audio]\nvolume = 0.3\n"))
        errors = await rejected_with_ready(h, sock, count=2)
        assert any("is empty" in e for e in errors), errors
        assert h.daemon.player.volume != 0.3
        key.write_text("sk-test\n")

        # An event log that cannot be opened (a symlink loop), with another change.
        loop = tmp_path / "loop.jsonl"
        loop.symlink_to(loop)
        h.config.write_text(base.replace("events.jsonl", "loop.jsonl").replace(
            "[audio]\n", "[audio]\nvolume = 0.3\n"))
        errors = await rejected_with_ready(h, sock, count=3)
        assert any("loop.jsonl" in e or "symbolic links" in e for e in errors), errors
        assert h.daemon.player.volume != 0.3
        # The old event log still records: the rejection itself is in it.
        logged = (tmp_path / "events.jsonl").read_text()
        assert logged.count('"config_rejected"') == 3

        # A Vosk model that does not load: at start the speaker would run without
        # offline STT; on reload the running model is kept instead.
        (tmp_path / "vosk").mkdir()
        h.config.write_text(base.replace("[cloud]\n", f"[offline]\nvosk_model = "
                                         f"'{tmp_path}/vosk'\n\n[cloud]\n"))
        offline = h.daemon.offline
        errors = await rejected_with_ready(h, sock, count=4)
        assert any("offline.vosk_model" in e for e in errors), errors
        assert h.daemon.offline is offline and h.daemon.settings.offline.vosk_model == ""

        # A good file after all that is applied.
        h.config.write_text(base.replace("[audio]\n", "[audio]\nvolume = 0.3\n"))
        await asyncio.wait_for(h.daemon.reload(), 30)
        reloaded = await h.wait_event("config_reloaded")
        assert reloaded.fields["keys"] == ["audio.volume"]
        assert h.daemon.player.volume == 0.3

    import asyncio

    daemon_scenario(tmp_path, monkeypatch, body, edit=with_key)


@pytest.mark.slow
def test_a_reload_refuses_a_fifo_a_device_and_a_torn_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Findings 7 and 6: a FIFO froze the daemon (the file was read on the event
    loop); a file cut short at a line end was applied with defaults."""
    import asyncio
    import os

    async def body(h: Any, sock: Any) -> None:
        import resource

        loop = asyncio.get_running_loop()
        gaps = [0.0]

        async def tick() -> None:  # how long the loop went without running us
            while True:
                before = loop.time()
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - before - 0.01)

        ticker = asyncio.create_task(tick())
        base = h.config.read_text()
        h.config.unlink()
        os.mkfifo(h.config, 0o600)
        errors = await rejected_with_ready(h, sock)
        assert any("not a regular file (a FIFO)" in e for e in errors), errors

        h.config.unlink()
        h.config.symlink_to("/dev/zero")
        errors = await rejected_with_ready(h, sock, count=2)
        assert any("a character device" in e for e in errors), errors

        # Cut just before [log]: it parses, and would drop the event log and state_dir.
        h.config.unlink()
        h.config.write_text(base[: base.index("[log]")])
        h.config.chmod(0o644)
        errors = await rejected_with_ready(h, sock, count=3)
        assert any("no longer sets log.events" in e for e in errors), errors
        assert h.daemon.settings.log.events.endswith("events.jsonl")
        # The loop stayed free throughout: capture kept going.
        total = h.daemon.ring.total
        await asyncio.sleep(0.3)
        assert h.daemon.ring.total > total
        ticker.cancel()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"three rejected reloads: longest event-loop stall {max(gaps) * 1000:.0f} ms, "
              f"peak RSS of the test process {peak:.0f} MB")

    daemon_scenario(tmp_path, monkeypatch, body)


@pytest.mark.slow
def test_leds_on_a_pin_that_does_not_exist_keep_the_old_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controls were closed and then failed to open on the new pins: no LEDs,
    no button, and no READY=1."""
    async def body(h: Any, sock: Any) -> None:
        h.config.write_text(h.config.read_text().replace(
            "[gpio]\n", "[gpio]\nled_pins = [5, 6, 99]\n"))
        errors = await rejected_with_ready(h, sock)
        assert any("99" in e for e in errors), errors
        assert h.daemon.settings.gpio.led_pins == [5, 6, 13]
        assert h.daemon.leds is not None and h.daemon.button is not None
        # The old button still starts a turn.
        await h.tap()
        await h.wait_event("state", state="listening")

    daemon_scenario(tmp_path, monkeypatch, body, gpio=True)
