"""Shared pytest setup. Fixture modules live beside the tests (speech.py,
fakecloud.py, alsa.py) and are imported where used."""

import pytest


@pytest.fixture
def fake_cloud():
    """A scripted OpenAI-compatible server on 127.0.0.1 (tests/fakecloud.py), stopped
    after the test; ``fake_cloud.settings()`` points CloudSettings at it."""
    from tests.fakecloud import FakeCloud

    with FakeCloud() as cloud:
        yield cloud
