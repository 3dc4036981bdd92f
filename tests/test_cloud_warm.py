"""The start-up rehearsal: every cloud engine runs once against answers in
memory, so no request reaches the service and nothing is billed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx2
import pytest

from edge_agent.cloud import warm
from edge_agent.cloud.warm import rehearse
from edge_agent.intents import Timers, device_tools
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.rig import Speaker


def test_rehearsal_runs_every_engine_without_a_request(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    toolbox = device_tools(Speaker(), Timers(tmp_path / "timers.json", on_ring=lambda t: None))
    with FakeCloud() as fake, caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(rehearse(fake.settings(), toolbox), 30))
    assert fake.requests == []
    assert caplog.records == []  # a failed step would have said so


def test_a_failing_rehearsal_only_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    toolbox = device_tools(Speaker(), Timers(tmp_path / "timers.json", on_ring=lambda t: None))
    monkeypatch.setattr(warm, "_answer", lambda request: httpx2.Response(500))
    with FakeCloud() as fake, caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(rehearse(fake.settings(), toolbox), 30))
    assert fake.requests == []
    assert "rehearsal failed" in caplog.text
