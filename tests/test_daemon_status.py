"""What the running daemon says about itself: status over the control socket (which
daemon, the cloud and why), and a missing key said at start, in status and by the
speaker, with nothing sent to the cloud."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.harness import Harness, run, wake_then

pytestmark = pytest.mark.slow


def cli_status(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    capsys.readouterr()
    code = main(["status", *flags, "--socket", str(tmp_path / "control.sock")])
    assert code == 0
    return capsys.readouterr().out


def test_status_names_the_daemon_and_the_cloud(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> tuple[str, str, str]:
        with FakeCloud() as fake:
            async with Harness(tmp_path, fake, wake_then("what is the weather"),
                               gpio=False) as h:
                await h.wait_event("turn_done", within=60)
                await asyncio.wait_for(h.daemon.connectivity.checked.wait(), 10)
                text = await asyncio.to_thread(cli_status, tmp_path, capsys)
                raw = await asyncio.to_thread(cli_status, tmp_path, capsys, "--json")
                return text, raw, h.daemon.status_line()

    text, raw, line = run(scenario())
    status = json.loads(raw)
    assert status["daemon"]["pid"] == os.getpid()
    assert status["daemon"]["config"] == str(tmp_path / "config.toml")
    assert status["daemon"]["socket"] == str(tmp_path / "control.sock")
    assert (status["cloud"]["state"], status["cloud"]["cause"]) == ("online", "")
    (turn,) = status["last_turns"]
    # Latencies after the end of speech: well under a minute, not clock readings.
    assert turn["latency_ms"] and all(0 < ms < 60_000 for ms in turn["latency_ms"].values())
    assert turn["reply"]
    assert str(os.getpid()) in text and "True" not in text and "False" not in text
    assert turn["reply"][:40] in text
    assert line.endswith("cloud online")


def test_a_missing_key_is_said_and_nothing_is_sent(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> tuple[FakeCloud, Harness, str]:
        with FakeCloud() as fake:
            harness = Harness(tmp_path, fake, wake_then("what is the weather"), gpio=False)
            config = harness.config.read_text().replace(
                "[cloud]\n", '[cloud]\napi_key_env = "EDGE_AGENT_TEST_NO_SUCH_KEY"\n')
            harness.config.write_text(config)
            async with harness as h:
                line = h.daemon.status_line()
                reply = await h.wait_event("reply_text", within=60)
                await h.wait_event("turn_done", within=30)
                text = await asyncio.to_thread(cli_status, tmp_path, capsys)
                assert "the API key is missing" in reply.fields["text"]
                assert "the API key is missing" in text
            return fake, h, line

    fake, h, line = run(scenario())
    assert "the API key is missing" in line and "online" not in line
    assert fake.requests == []  # not even the probe or the prewarm
    network = h.named("network")
    assert [(e.fields["online"], e.fields["cause"]) for e in network] == [(False, "no_key")]
