"""Shared pytest setup. The test bed (fake cloud, ALSA devices, harnesses) lives
in edge_agent.testbed, shared with `edge-agent bench`; it is imported where used."""

from collections.abc import Generator

import pytest

from edge_agent.testbed import UnavailableError


@pytest.fixture
def fake_cloud():
    """A scripted OpenAI-compatible server on 127.0.0.1 (edge_agent/testbed/fakecloud.py),
    stopped after the test; ``fake_cloud.settings()`` points CloudSettings at it."""
    from edge_agent.testbed.fakecloud import FakeCloud

    with FakeCloud() as cloud:
        yield cloud


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A missing part of the test bed (mosquitto) fails the test with its reason."""
    try:
        return (yield)
    except UnavailableError as exc:
        pytest.fail(str(exc))
