"""Timers ring on time, persist atomically and survive a restart."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from edge_agent.intents import Timer, Timers


def ring_within(timers_path: Path, timeout: float, *, setup=None) -> tuple[Timers, list[Timer]]:
    """Run a fresh Timers on ``timers_path`` until something rings (or ``timeout``)."""
    rung: list[Timer] = []

    async def scenario() -> Timers:
        got = asyncio.Event()

        def on_ring(timer: Timer) -> None:
            rung.append(timer)
            got.set()

        timers = Timers(timers_path, on_ring)
        if setup:
            setup(timers)
        task = asyncio.create_task(timers.run())
        try:
            await asyncio.wait_for(got.wait(), timeout)
            await asyncio.sleep(0.05)  # let any timer due at the same time ring too
        except TimeoutError:
            pass
        finally:
            task.cancel()
        return timers

    return asyncio.run(asyncio.wait_for(scenario(), timeout + 10)), rung


def test_set_list_cancel(tmp_path: Path) -> None:
    timers = Timers(tmp_path / "timers.json", lambda t: None)
    timers.set(300, "Pasta")
    timers.set(60)
    timers.set(120, "eggs")
    assert [t.label for t in timers.remaining()] == ["", "eggs", "pasta"]
    assert 295 < timers.remaining()[-1].remaining <= 300
    assert timers.cancel("EGGS") == 1
    assert timers.cancel("eggs") == 0
    assert timers.cancel() == 2
    assert timers.remaining() == []


def test_same_label_replaces(tmp_path: Path) -> None:
    timers = Timers(tmp_path / "timers.json", lambda t: None)
    timers.set(300, "pasta")
    timers.set(60, "pasta")
    (only,) = timers.remaining()
    assert only.duration == 60


def test_rings_when_due_and_is_gone_after(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    timers, rung = ring_within(path, 10, setup=lambda t: (t.set(0.2, "tea"), t.set(60, "soup")))
    assert [t.label for t in rung] == ["tea"]
    assert [t.label for t in timers.remaining()] == ["soup"]
    assert [r["label"] for r in json.loads(path.read_text())] == ["soup"]


def test_survives_a_restart_and_rings(tmp_path: Path) -> None:
    path = tmp_path / "state" / "timers.json"  # the directory is made on first save
    before = Timers(path, lambda t: None)
    before.set(0.5, "bread")
    del before  # the daemon stops
    after, rung = ring_within(path, 10)
    assert [t.label for t in rung] == ["bread"]
    assert rung[0].duration == 0.5
    assert after.remaining() == []


def test_timer_due_while_down_rings_at_start(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    Timers(path, lambda t: None).set(0.1, "laundry")
    time.sleep(0.3)  # down while it came due
    restarted = Timers(path, lambda t: None)
    assert [t.remaining for t in restarted.remaining()] == [0.0]
    _, rung = ring_within(path, 5)
    assert [t.label for t in rung] == ["laundry"]
    assert rung[0].overdue >= 0.2


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    timers = Timers(tmp_path / "timers.json", lambda t: None)
    for i in range(5):
        timers.set(100 + i, f"t{i}")
    assert [p.name for p in tmp_path.iterdir()] == ["timers.json"]
    saved = json.loads((tmp_path / "timers.json").read_text())
    assert len(saved) == 5 and all(r["due"] > time.time() + 90 for r in saved)


def test_corrupt_file_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    path.write_text("{half a json")
    timers = Timers(path, lambda t: None)
    assert timers.remaining() == []
    timers.set(10)
    assert len(json.loads(path.read_text())) == 1


def test_bad_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    good = {"label": "ok", "duration": 60, "due": time.time() + 60}
    path.write_text(json.dumps([{"label": "x"}, good, "junk"]))
    assert [t.label for t in Timers(path, lambda t: None).remaining()] == ["ok"]


def test_ring_handler_failure_does_not_stop_other_timers(tmp_path: Path) -> None:
    rung = []

    async def scenario() -> None:
        both = asyncio.Event()

        def on_ring(timer: Timer) -> None:
            rung.append(timer.label)
            if len(rung) == 2:
                both.set()
            if timer.label == "a":
                raise RuntimeError("speaker gone")

        timers = Timers(tmp_path / "timers.json", on_ring)
        timers.set(0.1, "a")
        timers.set(0.3, "b")
        task = asyncio.create_task(timers.run())
        await both.wait()
        task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert rung == ["a", "b"]


def test_unsaveable_file_still_rings(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    _, rung = ring_within(blocker / "timers.json", 5, setup=lambda t: t.set(0.1, "x"))
    assert [t.label for t in rung] == ["x"]


def test_timer_count_and_label_length_are_capped(tmp_path: Path) -> None:
    from edge_agent.intents.timers import MAX_LABEL_CHARS, MAX_TIMERS

    timers = Timers(tmp_path / "timers.json", lambda t: None)
    try:
        timers.set(60, "x" * 1_000_000)
    except ValueError as exc:
        assert f"at most {MAX_LABEL_CHARS} characters" in str(exc)
    else:
        raise AssertionError("a 1 MB label was accepted")
    timers.set(60, "y" * MAX_LABEL_CHARS)
    for n in range(MAX_TIMERS - 1):
        timers.set(60 + n, f"t{n}")
    try:
        timers.set(60)
    except ValueError as exc:
        assert f"at most {MAX_TIMERS} timers" in str(exc)
    else:
        raise AssertionError(f"timer {MAX_TIMERS + 1} was accepted")
    timers.set(30, "t0")  # replacing a running one is still fine
    assert len(timers.remaining()) == MAX_TIMERS
    assert len((tmp_path / "timers.json").read_text()) < 10_000
