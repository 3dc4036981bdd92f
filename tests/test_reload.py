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
