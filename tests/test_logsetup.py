"""Logging setup: plain stderr by hand, journal fields under systemd. The journal
handler is systemd-python's own; only its final send is recorded, since this
machine runs no journald."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.events import EventBus
from edge_agent.logsetup import (
    current_context,
    follow_state,
    log_context,
    set_level,
    setup_logging,
    under_systemd,
)

log = logging.getLogger("edge_agent.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


class Journal:
    """Records what JournalHandler would hand to journald."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, text: str, /, **fields: Any) -> None:
        self.entries.append({**fields, "MESSAGE": text})

    def fields(self, entry: dict[str, Any]) -> dict[str, str]:
        """Only what journald stores: upper-case field names."""
        return {k: str(v) for k, v in entry.items() if k.isupper()}


def test_journal_entries_carry_context_fields() -> None:
    journal = Journal()
    setup_logging("info", journal=True, journal_sender=journal)
    with log_context(turn_id=12, stage="stt"):
        log.info("transcribed %d words", 4)
        with log_context(STAGE="llm", STATE="thinking"):
            log.warning("slow first token")
    log.info("idle")

    first, second, third = (journal.fields(e) for e in journal.entries)
    assert first["MESSAGE"] == "edge_agent.test: transcribed 4 words [TURN_ID=12 STAGE=stt]"
    assert first["TURN_ID"] == "12"
    assert first["STAGE"] == "stt"
    assert first["PRIORITY"] == "6"
    assert first["SYSLOG_IDENTIFIER"] == "edge-agent"
    assert first["LOGGER"] == "edge_agent.test"
    assert (second["TURN_ID"], second["STAGE"], second["STATE"]) == ("12", "llm", "thinking")
    assert second["PRIORITY"] == "4"
    assert "TURN_ID" not in third and "STAGE" not in third
    assert third["MESSAGE"] == "edge_agent.test: idle"


def test_exceptions_reach_the_journal_with_their_traceback() -> None:
    journal = Journal()
    setup_logging("info", journal=True, journal_sender=journal)
    try:
        raise RuntimeError("microphone vanished")
    except RuntimeError:
        log.exception("capture failed")
    (entry,) = journal.entries
    assert entry["PRIORITY"] == "3"
    assert "Traceback" in entry["MESSAGE"]
    assert "RuntimeError: microphone vanished" in entry["MESSAGE"]


def test_by_hand_lines_show_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug", journal=False)
    with log_context(TURN_ID=3):
        log.debug("wake word heard")
    log.info("no context")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("DEBUG   edge_agent.test: wake word heard [TURN_ID=3]")
    assert lines[1].endswith("INFO    edge_agent.test: no context")


def test_without_systemd_python_stderr_lines_carry_a_priority_prefix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # as if not installed
    setup_logging("info", journal=True)
    with log_context(STAGE="tts"):
        log.warning("voice fell back to piper")
    assert capsys.readouterr().err == "<4>edge_agent.test: voice fell back to piper [STAGE=tts]\n"


def test_the_level_and_chatty_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("warning", journal=False)
    log.info("hidden")
    log.warning("shown")
    assert "hidden" not in capsys.readouterr().err
    assert logging.getLogger("httpx2").getEffectiveLevel() == logging.WARNING
    set_level("debug")  # a reload changed log.level
    logging.getLogger("httpx2").debug("HTTP Request: POST /v1/audio/speech")
    log.debug("shown now")
    err = capsys.readouterr().err
    assert "HTTP Request" in err and "shown now" in err
    setup_logging("info", journal=False)  # again: replaces the handler, never duplicates
    log.info("once")
    err = capsys.readouterr().err
    assert err.count("once") == 1
    assert logging.getLogger("httpx2").getEffectiveLevel() == logging.WARNING


def test_context_follows_tasks_and_worker_threads() -> None:
    async def scenario() -> list[dict[str, str]]:
        async def stage() -> dict[str, str]:
            return current_context()

        with log_context(TURN_ID=7):
            task = asyncio.create_task(stage())
            in_thread = await asyncio.wait_for(asyncio.to_thread(current_context), 10)
        outside = current_context()
        return [await asyncio.wait_for(task, 10), in_thread, outside]

    in_task, in_thread, outside = asyncio.run(scenario())
    assert in_task == in_thread == {"TURN_ID": "7"}
    assert outside == {}


def test_field_names_must_suit_the_journal() -> None:
    with pytest.raises(ValueError, match="journal field"), log_context(**{"turn-id": 1}):
        pass
    with pytest.raises(ValueError), log_context(_PRIVATE="x"):
        pass
    with pytest.raises(ValueError), log_context(**{"2FA": "x"}):
        pass
    with pytest.raises(ValueError), log_context(**{"A" * 65: "x"}):
        pass
    with log_context(**{"A" * 64: "x"}):
        assert current_context() == {"A" * 64: "x"}


def test_under_systemd_only_when_stderr_is_the_journal_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stream").open("w") as stream, (tmp_path / "other").open("w") as other:
        monkeypatch.setattr(sys, "stderr", stream)
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_systemd()
        monkeypatch.setattr(sys, "stderr", other)  # redirected: not the journal
        assert not under_systemd()
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.delenv("INVOCATION_ID")
        assert not under_systemd()
        monkeypatch.setenv("INVOCATION_ID", "x")
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not under_systemd()


def test_every_record_carries_the_agent_state() -> None:
    journal = Journal()
    setup_logging("info", journal=True, journal_sender=journal)
    bus = EventBus()
    stop = follow_state(bus)
    try:
        log.info("before any state")
        bus.emit("state", state="thinking")
        with log_context(TURN_ID=4):
            log.info("asking the model")
        bus.emit("state", state="idle")
        log.info("done")
    finally:
        stop()
    log.info("after")
    states = [journal.fields(e).get("STATE") for e in journal.entries]
    assert states == [None, "thinking", "idle", None]
    assert journal.fields(journal.entries[1])["TURN_ID"] == "4"


# A private journald in a private mount namespace (tmpfs over /run and the
# journal directory, so nothing reaches the machine's own), and a child whose
# stderr is a journal stream, with JOURNAL_STREAM and INVOCATION_ID set the way
# systemd sets them for a service.
JOURNALD_SCRIPT = r'''
set -euo pipefail
mount -t tmpfs tmpfs /run
[ -d /var/log/journal ] && mount -t tmpfs tmpfs /var/log/journal
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald &
trap 'kill $!' EXIT
for _ in $(seq 200); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
systemd-cat -t edge-agent-stderr bash -c '
    export INVOCATION_ID=0123456789abcdef0123456789abcdef
    export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2)
    exec "$0" -c "$1"' "$PYTHON" "$CODE"
journalctl --sync
journalctl --no-pager -o json SYSLOG_IDENTIFIER=edge-agent
'''

DAEMON_LIKE = '''
import logging
from edge_agent.logsetup import log_context, setup_logging, under_systemd
assert under_systemd()
setup_logging("info")
log = logging.getLogger("edge_agent.agent.turn")
with log_context(TURN_ID=12, STAGE="stt"):
    log.warning("transcribed in %d ms", 412)
log.info("between turns")
'''


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not Path("/lib/systemd/systemd-journald").exists()
                    or shutil.which("unshare") is None,
                    reason="needs root, unshare and systemd-journald")
def test_records_reach_a_real_journald_and_filter_by_turn(tmp_path: Path) -> None:
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", JOURNALD_SCRIPT],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHON": sys.executable, "CODE": DAEMON_LIKE,
             "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"no mount namespace here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    turn = [e for e in entries if e.get("TURN_ID") == "12"]
    assert len(turn) == 1
    assert turn[0]["STAGE"] == "stt"
    assert turn[0]["PRIORITY"] == "4"
    assert turn[0]["_TRANSPORT"] == "journal"  # structured, not a line on the stream
    assert turn[0]["MESSAGE"].startswith("edge_agent.agent.turn: transcribed in 412 ms")
    other = [e for e in entries if e["MESSAGE"].endswith("between turns")]
    assert len(other) == 1 and "TURN_ID" not in other[0]
