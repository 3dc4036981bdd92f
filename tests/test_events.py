"""The event bus and the JSON Lines log that the other modules write through."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from edge_agent.events import EVENT_FIELDS, EventBus, EventLog


def test_log_writes_one_flushed_json_object_per_line(tmp_path: Path) -> None:
    bus = EventBus()
    log = EventLog(tmp_path / "sub" / "events.jsonl")
    bus.subscribe(log)
    before = time.monotonic()
    bus.emit("state", state="listening")
    bus.emit("wake", model="hey_jarvis", score=0.91)
    # Read before close: each line must already be on disk.
    lines = (tmp_path / "sub" / "events.jsonl").read_text().splitlines()
    log.close()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["state", "wake"]
    assert records[1]["model"] == "hey_jarvis"
    assert before <= records[0]["t"] <= records[1]["t"] <= time.monotonic()


def test_unknown_event_or_missing_field_is_refused() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="unknown event"):
        bus.emit("stat", state="idle")
    with pytest.raises(ValueError, match="lacks"):
        bus.emit("failover", stage="stt", reason="timeout")


def test_schema_names_the_issue_events() -> None:
    for name in ("state", "wake", "transcript", "reply_text", "audio_out_start", "audio_out_end",
                 "barge_in", "failover", "network", "turn_done", "config_reloaded",
                 "config_rejected", "utterance"):
        assert name in EVENT_FIELDS


def test_a_failing_listener_does_not_stop_delivery(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("led driver fell over")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(lambda e: seen.append(e.name))
    bus.emit("network", online=False)
    unsubscribe()
    bus.emit("network", online=True)
    assert seen == ["network"]
    assert "led driver fell over" in caplog.text


def test_emitting_from_many_threads_keeps_lines_whole(tmp_path: Path) -> None:
    bus = EventBus()
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        bus.subscribe(log)

        def spam(n: int) -> None:
            for i in range(200):
                bus.emit("transcript", text=f"thread {n} line {i} " + "x" * 200, engine="vosk")

        threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    lines = path.read_text().splitlines()
    assert len(lines) == 800
    assert all(json.loads(line)["event"] == "transcript" for line in lines)
