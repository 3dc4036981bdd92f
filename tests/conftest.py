"""Shared pytest setup. The test bed (fake cloud, ALSA devices, harnesses) lives
in edge_agent.testbed, shared with `edge-agent bench`; it is imported where used."""

import json
from collections.abc import Generator
from pathlib import Path

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


@pytest.fixture(scope="session")
def steady_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The joe voice with Piper's sampling noise off (``noise_scale`` and
    ``noise_w`` 0 in its .json, as an owner could set them): the same text gives
    the same samples every run, so a figure measured on speech cannot fail CI by
    the luck of one synthesis."""
    from edge_agent.config import OfflineSettings
    from edge_agent.offline import default_piper_voice

    joe = default_piper_voice(OfflineSettings())
    voice = tmp_path_factory.mktemp("steady") / joe.name
    voice.symlink_to(joe)
    config = json.loads(Path(f"{joe}.json").read_text(encoding="utf-8"))
    config.setdefault("inference", {}).update(noise_scale=0.0, noise_w=0.0)
    Path(f"{voice}.json").write_text(json.dumps(config), encoding="utf-8")
    return voice
