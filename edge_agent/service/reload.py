"""What a reload (SIGHUP) must redo: compare the running settings with the newly
read ones, key by key, and name the few things to reopen or rebuild.

A reload that only touches, say, ``turn.end_silence`` must not drop the
microphone: the agent reads turn settings at the next turn anyway. Every key of
``Settings`` is classified below, either with the effects its change has or as
read where it is used; tests/test_reload.py fails when a new key is neither.

A reload never puts a built-in default in place of a key the running file set:
a file caught half written parses more often than one would hope (cut at a line
end, it is just shorter), and a vanished ``cloud.enabled = false`` would send
every utterance to the public API. Such a file is refused (refuse_dropped_keys).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from edge_agent.config import Settings
from edge_agent.errors import ConfigError

# Dotted key (or "section." prefix) -> what a change of it requires. First match wins.
EFFECTS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (key, frozenset(effects)) for key, effects in (
        ("audio.input", {"reopen_input"}),
        ("audio.reconnect_max_seconds", {"reopen_input"}),
        # Every reader (wake, the turn, pre-roll) holds absolute indices into the
        # one ring; swapping it under them is a restart's job, not a reload's.
        ("audio.buffer_seconds", {"restart_required"}),
        ("audio.output", {"reopen_output"}),
        ("audio.volume", {"set_volume"}),
        ("wake.", {"reload_wake"}),
        # The canceller and the test room join the speaker and the microphone.
        ("echo.", {"restart_required"}),
        ("offline.vosk_model", {"reload_offline"}),
        ("offline.piper_voice", {"reload_offline"}),
        ("offline.probe_interval", {"restart_connectivity"}),
        ("offline.probe_max_interval", {"restart_connectivity"}),
        # Conversation holds these: a new one (history kept or not) applies them.
        ("cloud.system_prompt", {"rebuild_conversation"}),
        ("cloud.history_turns", {"rebuild_conversation"}),
        ("cloud.history_chars", {"rebuild_conversation"}),
        ("cloud.history_idle_seconds", {"rebuild_conversation"}),
        ("cloud.", {"rebuild_cloud"}),
        ("gpio.", {"rebuild_controls"}),
        ("earcons.", {"reload_earcons"}),
        ("log.level", {"set_log_level"}),
        ("log.events", {"reopen_event_log"}),
        ("log.debug_recordings", {"reopen_event_log"}),
        ("service.control_socket", {"reopen_control_socket"}),
        # Timers and mute live there; moving them under a running daemon could
        # lose a timer.
        ("service.state_dir", {"restart_required"}),
        # The broker connection, its will and the discovery topics are set up once.
        ("mqtt.", {"restart_required"}),
    )
)

# Keys the agent reads each time it uses them: a change needs nothing redone.
APPLIED_ON_USE: tuple[str, ...] = (
    "audio.preroll_seconds",
    "turn.",
    "offline.stt_mode",
    "offline.prefer_local",
)


@dataclass(frozen=True)
class ReloadPlan:
    """The difference between two Settings and what it takes to apply it."""

    keys: frozenset[str]
    """Every changed setting, dotted: {"audio.volume", "cloud.timeouts.stt"}."""
    actions: frozenset[str]
    """What to redo, e.g. {"set_volume", "rebuild_cloud"}; see the properties."""

    @property
    def changed(self) -> frozenset[str]:
        """Sections holding a changed key, nested ones too: {"cloud", "cloud.timeouts"}."""
        sections = set()
        for key in self.keys:
            parts = key.split(".")[:-1]
            sections.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
        return frozenset(sections)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def describe(self) -> str:
        """One log line: "audio.volume, wake.threshold" or "nothing changed"."""
        return ", ".join(sorted(self.keys)) or "nothing changed"

    @property
    def reopen_input(self) -> bool:
        """Close and reopen the microphone (new device, ring size or reconnect cap)."""
        return "reopen_input" in self.actions

    @property
    def reopen_output(self) -> bool:
        return "reopen_output" in self.actions

    @property
    def set_volume(self) -> bool:
        """Only the software volume changed: set it on the open player."""
        return "set_volume" in self.actions

    @property
    def reload_wake(self) -> bool:
        """Build a new WakeDetector (models, thresholds, timings)."""
        return "reload_wake" in self.actions

    @property
    def reload_offline(self) -> bool:
        """Load the Vosk model or Piper voice again."""
        return "reload_offline" in self.actions

    @property
    def rebuild_cloud(self) -> bool:
        """Close the cloud client and build a new one (URL, key, models, timeouts)."""
        return "rebuild_cloud" in self.actions

    @property
    def rebuild_conversation(self) -> bool:
        """Build a new Conversation (system prompt or history limits changed)."""
        return "rebuild_conversation" in self.actions

    @property
    def restart_connectivity(self) -> bool:
        return "restart_connectivity" in self.actions

    @property
    def rebuild_controls(self) -> bool:
        """Close the button and LEDs and set them up on the new pins."""
        return "rebuild_controls" in self.actions

    @property
    def reload_earcons(self) -> bool:
        return "reload_earcons" in self.actions

    @property
    def set_log_level(self) -> bool:
        return "set_log_level" in self.actions

    @property
    def reopen_event_log(self) -> bool:
        return "reopen_event_log" in self.actions

    @property
    def reopen_control_socket(self) -> bool:
        return "reopen_control_socket" in self.actions

    @property
    def restart_required(self) -> frozenset[str]:
        """Changed keys that take effect only after a restart (log them as such)."""
        return frozenset(k for k in self.keys if "restart_required" in effects_of(k))


def plan_reload(old: Settings, new: Settings) -> ReloadPlan:
    """What changed from ``old`` to ``new`` and what must be redone to apply it."""
    before, after = flatten(old), flatten(new)
    keys = frozenset(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    actions = frozenset(a for k in keys for a in effects_of(k))
    return ReloadPlan(keys=keys, actions=actions)


def effects_of(key: str) -> frozenset[str]:
    """What a change of the dotted ``key`` requires (empty: read where used)."""
    for pattern, effects in EFFECTS:
        if _matches(pattern, key):
            return effects
    return frozenset()


def is_classified(key: str) -> bool:
    """True when ``key`` is listed in EFFECTS or APPLIED_ON_USE."""
    return any(_matches(p, key) for p, _ in EFFECTS) or any(
        _matches(p, key) for p in APPLIED_ON_USE)


def _matches(pattern: str, key: str) -> bool:
    return key.startswith(pattern) if pattern.endswith(".") else key == pattern


def flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf settings by dotted key; ``source`` (where they were read from) is not one."""
    leaves: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if not f.compare:
            continue
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            leaves.update(flatten(value, f"{prefix}{f.name}."))
        else:
            leaves[f"{prefix}{f.name}"] = value
    return leaves


def refuse_dropped_keys(old: Settings, new: Settings) -> None:
    """ConfigError when ``new`` leaves out keys ``old``'s file set: they would
    silently fall back to their defaults, which is what a torn file looks like."""
    dropped = sorted(old.keys_set - new.keys_set)
    if not dropped:
        return
    defaults = flatten(Settings())
    shown = ", ".join(f"{key} (default {json.dumps(defaults[key])})" for key in dropped[:5])
    more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
    raise ConfigError(
        f"{new.source}: no longer sets {shown}{more}; a reload does not fall back to "
        "built-in defaults (a file still being written looks like this): set them "
        "explicitly, or restart to use the defaults")
