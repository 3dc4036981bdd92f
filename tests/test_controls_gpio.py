"""Choosing the pin factory: none when disabled or on a machine without GPIO
(this CI machine is one), with exactly one log line and no warnings."""

from __future__ import annotations

import logging
import warnings

import pytest
from gpiozero.pins.mock import MockFactory

from edge_agent.config import GpioSettings
from edge_agent.controls import make_pin_factory
from edge_agent.controls.gpio import NO_GPIO_MESSAGE


def factory_and_log(caplog: pytest.LogCaptureFixture, settings: GpioSettings) -> tuple:
    caplog.set_level(logging.DEBUG, logger="edge_agent.controls")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factory = make_pin_factory(settings)
    records = [r for r in caplog.records if r.name.startswith("edge_agent.controls")]
    return factory, records, caught


def test_disabled_gives_none_and_one_line(caplog: pytest.LogCaptureFixture) -> None:
    factory, records, caught = factory_and_log(caplog, GpioSettings(enabled=False))
    assert factory is None
    assert [(r.levelno, NO_GPIO_MESSAGE in r.getMessage()) for r in records] == [
        (logging.INFO, True)]
    assert "gpio.enabled" in records[0].getMessage()
    assert caught == []


def test_machine_without_gpio_gives_none_one_line_and_no_warnings(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    factory, records, caught = factory_and_log(caplog, GpioSettings())
    if factory is not None:  # pragma: no cover - only on a Raspberry Pi
        factory.close()
        pytest.skip("this machine has GPIO")
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert NO_GPIO_MESSAGE in records[0].getMessage()
    assert caught == [], "gpiozero's fallback warnings are not the owner's business"


def test_environment_can_pick_gpiozero_mock_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    factory = make_pin_factory(GpioSettings())
    assert isinstance(factory, MockFactory)
    factory.close()


def test_environment_naming_a_missing_driver_is_no_gpio(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-driver")
    factory, records, _ = factory_and_log(caplog, GpioSettings())
    assert factory is None
    assert len(records) == 1 and NO_GPIO_MESSAGE in records[0].getMessage()
