"""Every topic the speaker uses, derived once from the settings.

Device topics live under ``edge-agent/<device_id>/``; wake claims of a group
under ``edge-agent/group/<group>/wake``; Home Assistant reads the retained
configs under ``<discovery_prefix>/<component>/<device_id>/<entity>/config``.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from edge_agent.config import MqttSettings, mqtt_name_problems
from edge_agent.errors import ConfigError

ROOT = "edge-agent"

STATE_TOPICS = ("state", "muted", "volume", "transcript", "reply", "near_miss", "timers",
                "network")
"""What the speaker publishes (retained) under its base topic, one entity each."""


def default_device_id() -> str:
    """The host name, made topic-safe ("kitchen-pi", not "kitchen-pi.local")."""
    name = socket.gethostname().split(".")[0].lower()
    return re.sub(r"[^a-z0-9_-]", "_", name)[:64] or "speaker"


@dataclass(frozen=True)
class Topics:
    device_id: str
    discovery_prefix: str
    group: str

    @classmethod
    def from_settings(cls, settings: MqttSettings) -> Topics:
        """Raises ConfigError for names that would break topics (config validation
        reports the same; settings built in code meet the rule here)."""
        problems = mqtt_name_problems(settings)
        if problems:
            raise ConfigError(problems)
        return cls(settings.device_id or default_device_id(), settings.discovery_prefix,
                   settings.group)

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.device_id}"

    @property
    def availability(self) -> str:
        """"online" (retained) while connected; the broker's last will says "offline"."""
        return f"{self.base}/availability"

    @property
    def command(self) -> str:
        """JSON commands: {"command": "mute" | "unmute" | "volume" | "listen" | "stop" | "say"}."""
        return f"{self.base}/command"

    @property
    def announce(self) -> str:
        """Text to speak (plain, or JSON {"text": ...})."""
        return f"{self.base}/announce"

    @property
    def claims(self) -> str | None:
        """Where the group's speakers claim wake words; None without a group."""
        return f"{ROOT}/group/{self.group}/wake" if self.group else None

    def state(self, name: str) -> str:
        return f"{self.base}/{name}"

    def discovery(self, component: str, entity: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.device_id}/{entity}/config"
