"""Build the MQTT side of the daemon from Settings, or nothing while
``mqtt.host`` is empty: the password file is read like the API key file (and
refused when others can write it), names are checked, TLS is set up."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.config import MqttSettings, Secret, read_secret_file
from edge_agent.mqtt.announcer import Announcer
from edge_agent.mqtt.link import MqttLink
from edge_agent.mqtt.topics import Topics

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from edge_agent.agent.agent import Agent
    from edge_agent.config import Settings
    from edge_agent.events import EventBus
    from edge_agent.intents.timers import Timers


def load_password(settings: MqttSettings) -> Secret | None:
    if not settings.password_file:
        return None
    password, warnings = read_secret_file(Path(settings.password_file), "mqtt.password_file",
                                          "MQTT password")
    for warning in warnings:
        log.warning("%s", warning)
    return password


def build_mqtt(settings: Settings, agent: Agent, bus: EventBus,
               timers: Timers | None) -> MqttLink | None:
    """The link (run it as a supervised job), wired into the agent: its arbiter
    when the speaker is in a group, its status under "mqtt". None when off."""
    s = settings.mqtt
    if not s.host:
        return None
    topics = Topics.from_settings(s)
    tls = ssl.create_default_context(cafile=s.ca_file or None) if s.tls else None
    link = MqttLink(s, topics, agent=agent, bus=bus, timers=timers,
                    announcer=Announcer(agent, bus), password=load_password(s), tls=tls)
    if link.arbiter is not None:
        agent.arbiter = link.arbiter
    agent.status_extras["mqtt"] = link.status
    return link
