"""What the owner touches and sees: the push-to-talk button, status LEDs, earcons.

The agent reaches gpiozero only through ``make_pin_factory``; every device here
takes that factory (None without GPIO, a MockFactory in tests).
"""

from edge_agent.controls.button import ButtonAction, PushButton
from edge_agent.controls.earcons import EARCON_NAMES, Earcons
from edge_agent.controls.gpio import GpioError, make_pin_factory
from edge_agent.controls.leds import StatusLeds
from edge_agent.controls.patterns import DEFAULT_PATTERNS, LED_STATES, parse_pattern

__all__ = [
    "DEFAULT_PATTERNS",
    "EARCON_NAMES",
    "LED_STATES",
    "ButtonAction",
    "Earcons",
    "GpioError",
    "PushButton",
    "StatusLeds",
    "make_pin_factory",
    "parse_pattern",
]
