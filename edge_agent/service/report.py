"""What the daemon says about itself: the start-up line, the one-line status that
the "ready" log line and systemd's STATUS= share, the status the control socket
returns (which daemon answered included), and that status as text for people."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.errors import CAUSES

REPLY_CHARS = 120
"""Replies longer than this are cut in `edge-agent status` (the JSON has them whole)."""


def startup_line(*, config: Path | None, engines: dict[str, str], cloud_url: str) -> str:
    """The first INFO line: enough to tell which build, config and engines are running."""
    used = ", ".join(f"{stage} {name}" for stage, name in engines.items())
    return (f"edge-agent {__version__} (pid {os.getpid()}), config "
            f"{config or 'built-in defaults'}; engines: {used}; cloud {cloud_url}")


def cloud_words(cloud: dict[str, Any] | None) -> str:
    """The cloud's state for one line: "cloud online", "checking the cloud", or
    "cloud unavailable: <cause>". ``cloud`` is Connectivity.status(), None if disabled."""
    if cloud is None:
        return "cloud disabled"
    state = cloud.get("state") or ("online" if cloud.get("online") else "offline")
    if state == "online":
        return "cloud online"
    if state == "checking":
        return "checking the cloud"
    cause = str(cloud.get("cause") or "")
    return f"cloud unavailable: {CAUSES.get(cause) or cloud.get('reason') or 'no answer'}"


class StatusTarget:
    """The control socket's target: the agent, whose status() gains ``about()``
    (which daemon answered, the cloud's state and its cause)."""

    def __init__(self, agent: Any, about: Callable[[], dict[str, Any]]) -> None:
        self._agent = agent
        self._about = about

    def status(self) -> dict[str, Any]:
        return {**self._agent.status(), **self._about()}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


def format_status(status: dict[str, Any]) -> str:
    """The status as readable lines: units, yes/no, the cloud with its cause, which
    daemon answered, and the last turns with what was heard and said and each
    stage's latency after the end of speech."""
    lines = []
    daemon = status.get("daemon")
    if isinstance(daemon, dict):
        lines.append(f"daemon: pid {daemon.get('pid', '?')}, config "
                     f"{daemon.get('config') or 'built-in defaults'}, socket "
                     f"{daemon.get('socket', '?')}, version {daemon.get('version', '?')}")
    cloud = status.get("cloud")
    if isinstance(cloud, dict):
        words = cloud_words(None if cloud.get("enabled") is False else cloud)
        url = f" ({cloud['url']})" if cloud.get("url") else ""
        lines.append(f"cloud: {words.removeprefix('cloud ')}{url}")
    for key, value in status.items():
        if key in ("last_turns", "daemon", "cloud", "online"):
            continue
        if key == "wake" and isinstance(value, dict):
            lines += _wake_lines(value)
        elif key == "faults" and isinstance(value, dict):
            lines += [f"fault: {where}: {what}" for where, what in value.items()] or \
                ["faults: none"]
        elif key == "mqtt" and isinstance(value, dict):
            state = "connected" if value.get("connected") else \
                f"unreachable ({value.get('error') or 'not connected yet'})"
            group = f", group {value['group']}" if value.get("group") else ""
            lines.append(f"mqtt: broker {value.get('broker', '?')} {state}, device "
                         f"{value.get('device_id', '?')}{group}")
        elif isinstance(value, dict):
            lines.append(f"{_label(key)}: " + ", ".join(
                f"{_label(k)} {_value(k, v)}" for k, v in value.items() if v is not None))
        else:
            lines.append(f"{_label(key)}: {_value(key, value)}")
    for turn in status.get("last_turns", []):
        lines.extend(_turn_lines(turn))
    return "\n".join(lines)


def _wake_lines(wake: dict[str, Any]) -> list[str]:
    """Each engine's peak over the last minute and the recent near misses, so
    an owner can see how close a take came to ``wake.thresholds``."""
    lines = [f"wake engines: {', '.join(wake.get('engines', [])) or '-'}"]
    thresholds = wake.get("thresholds", {})
    for model, peaks in wake.get("peaks", {}).items():
        own = wake.get("engine_thresholds", {}).get(model, {})
        shown = ", ".join(f"{engine} {score:.2f}" + (f"/{own[engine]}" if engine in own else "")
                          for engine, score in peaks.items())
        lines.append(f"wake peak last minute, {model} (threshold {thresholds.get(model, '?')}"
                     f"{'; score/threshold by engine' if own else ''}): {shown}")
    misses = wake.get("near_misses", [])
    lines.append(f"wake near misses: {len(misses) or 'none'}")
    for miss in misses[-5:]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(miss["at"]))
        lines.append(f"  {when} {miss['model']} {miss['engine']} {miss['score']:.2f} "
                     f"(threshold {miss['threshold']})")
    return lines


def _label(key: str) -> str:
    return key.removesuffix("_s").replace("_", " ")


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if key.endswith("_s") and isinstance(value, int | float):
        return f"{value:.0f} s"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _turn_lines(turn: dict[str, Any]) -> list[str]:
    heard = turn.get("transcript", "")
    said = str(turn.get("reply", ""))
    if len(said) > REPLY_CHARS:
        said = said[:REPLY_CHARS - 1] + "…"
    stages = " ".join(f"{name}={ms:.0f}ms" for name, ms in turn.get("latency_ms", {}).items())
    lines = [f"turn {turn.get('id', '?')}: heard {heard!r} [{turn.get('engine') or '-'}]",
             f"    said {said!r} [{turn.get('reply_engine') or '-'}]"]
    if stages:
        lines.append(f"    after the end of speech: {stages}")
    if turn.get("error"):
        lines.append(f"    error: {turn['error']}")
    return lines
