"""Home Assistant over MQTT: discovery, state, commands, announcements, and
wake arbitration between the speakers of a group."""

from edge_agent.mqtt.link import MqttLink
from edge_agent.mqtt.service import build_mqtt

__all__ = ["MqttLink", "build_mqtt"]
