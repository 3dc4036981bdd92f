"""Home Assistant MQTT discovery: the speaker as one device with its entities.

Each entity's config is retained under the discovery prefix, carries a
``unique_id`` (so the owner can rename it in HA) and the availability topic,
so HA greys the whole device out when the broker publishes the last will.
Commands from HA all go to the one JSON command topic.
"""

from __future__ import annotations

import json
from typing import Any

from edge_agent import __version__
from edge_agent.mqtt.topics import Topics

STATES = ("idle", "listening", "thinking", "speaking", "offline", "muted", "error")
"""What the state sensor shows (the LED states)."""


def _command(name: str, **fields: Any) -> str:
    return json.dumps({"command": name, **fields})


def discovery_messages(topics: Topics) -> list[tuple[str, str]]:
    """(config topic, JSON payload) for every entity; publish them retained."""
    node = topics.device_id
    device = {
        "identifiers": [f"edge_agent_{node}"],
        "name": f"edge-agent {node}",
        "manufacturer": "edge-agent",
        "model": "Smart speaker",
        "sw_version": __version__,
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "edge-agent", "sw_version": __version__},
    }
    entities: list[tuple[str, str, dict[str, Any]]] = [
        ("sensor", "state", {
            "name": "State", "state_topic": topics.state("state"),
            "device_class": "enum", "options": list(STATES), "icon": "mdi:account-voice"}),
        ("switch", "mute", {
            "name": "Mute", "state_topic": topics.state("muted"),
            "command_topic": topics.command,
            "payload_on": _command("mute"), "payload_off": _command("unmute"),
            "state_on": "ON", "state_off": "OFF", "icon": "mdi:microphone-off"}),
        ("number", "volume", {
            "name": "Volume", "state_topic": topics.state("volume"),
            "command_topic": topics.command,
            "command_template": '{"command": "volume", "value": {{ value }}}',
            "min": 0, "max": 100, "step": 1, "unit_of_measurement": "%",
            "mode": "slider", "icon": "mdi:volume-high"}),
        ("sensor", "transcript", {
            "name": "Last transcript", "state_topic": topics.state("transcript"),
            "icon": "mdi:text-recognition"}),
        ("sensor", "reply", {
            "name": "Last reply", "state_topic": topics.state("reply"),
            "icon": "mdi:message-reply-text"}),
        ("sensor", "near_miss", {
            "name": "Wake word near miss", "state_topic": topics.state("near_miss"),
            "value_template": "{{ value_json.score }}",
            "json_attributes_topic": topics.state("near_miss"),
            "state_class": "measurement", "entity_category": "diagnostic",
            "icon": "mdi:ear-hearing"}),
        ("sensor", "timers", {
            "name": "Next timer", "state_topic": topics.state("timers"),
            "value_template": "{{ value_json.next }}",
            "json_attributes_topic": topics.state("timers"),
            "device_class": "timestamp", "icon": "mdi:timer-outline"}),
        ("binary_sensor", "network", {
            "name": "Cloud reachable", "state_topic": topics.state("network"),
            "payload_on": "ON", "payload_off": "OFF", "device_class": "connectivity",
            "entity_category": "diagnostic"}),
        ("button", "listen", {
            "name": "Listen", "command_topic": topics.command,
            "payload_press": _command("listen"), "icon": "mdi:microphone"}),
        ("button", "stop", {
            "name": "Stop", "command_topic": topics.command,
            "payload_press": _command("stop"), "icon": "mdi:stop"}),
    ]
    messages = []
    for component, entity, config in entities:
        payload = {**config, "unique_id": f"edge_agent_{node}_{entity}", **common}
        messages.append((topics.discovery(component, entity), json.dumps(payload)))
    return messages
