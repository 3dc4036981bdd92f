"""The one place gpiozero's pin factory is chosen, and the GPIO error type.

Everything else receives the factory as an argument, so tests hand in
``gpiozero.pins.mock.MockFactory`` and keep the gpiozero devices above it real.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

from gpiozero import Device
from gpiozero.exc import PinFactoryFallback

from edge_agent.errors import EdgeAgentError

if TYPE_CHECKING:
    from gpiozero.pins import Factory

    from edge_agent.config import GpioSettings

log = logging.getLogger(__name__)

NO_GPIO_MESSAGE = "no GPIO hardware, running without button and LEDs"


class GpioError(EdgeAgentError):
    """A configured button or LED pin cannot be used (invalid, or taken by another program)."""


def make_pin_factory(settings: GpioSettings) -> Factory | None:
    """gpiozero's pin factory for this machine, or None (and one INFO line) without GPIO.

    gpiozero's own choice is kept (lgpio, RPi.GPIO, pigpio, then its native
    driver; ``GPIOZERO_PIN_FACTORY`` still overrides it, e.g. "mock" on a
    laptop), but its fallback warnings are silenced: on a machine without GPIO
    they are noise, and the one line below says what matters.
    """
    if not settings.enabled:
        log.info("%s (gpio.enabled = false)", NO_GPIO_MESSAGE)
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PinFactoryFallback)
        try:
            # The public Device.pin_factory would also become gpiozero's global
            # default; the daemon passes its factory explicitly instead.
            factory = Device._default_pin_factory()
        except Exception as exc:
            # BadPinFactory when no driver loads. A driver named by
            # GPIOZERO_PIN_FACTORY raises its own types (ImportError, RuntimeError
            # from RPi.GPIO off a Pi, lgpio.error without /dev/gpiochip access).
            log.info("%s (%s)", NO_GPIO_MESSAGE, exc)
            return None
    log.debug("GPIO pin factory: %s", type(factory).__name__)
    return factory
