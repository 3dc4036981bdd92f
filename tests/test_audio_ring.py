"""The ring buffer: absolute sample clock, pre-roll, independent readers, overruns."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from edge_agent.audio import RingBuffer
from edge_agent.errors import AudioDeviceError

RATE = 16000


def ramp(start: int, n: int) -> np.ndarray:
    """Samples whose values encode their absolute index (mod 2**15), so any
    misplaced sample shows."""
    return (np.arange(start, start + n) % 32768).astype(np.int16)


def fill(ring: RingBuffer, n: int, block: int = 320) -> None:
    while n > 0:
        k = min(block, n)
        ring.write(ramp(ring.total, k))
        n -= k


def test_total_counts_every_sample_and_read_range_wraps() -> None:
    ring = RingBuffer(1.0)
    fill(ring, int(2.5 * RATE))
    assert ring.total == int(2.5 * RATE)
    assert ring.oldest == ring.total - RATE
    got = ring.read_range(ring.total - 1000, ring.total)
    np.testing.assert_array_equal(got, ramp(ring.total - 1000, 1000))
    with pytest.raises(AudioDeviceError):
        ring.read_range(0, 10)
    with pytest.raises(ValueError):
        ring.read_range(ring.total, ring.total + 1)


def test_preroll_reader_returns_the_last_1_5_seconds() -> None:
    ring = RingBuffer(5.0)
    fill(ring, 4 * RATE)
    pressed_at = ring.total
    reader = ring.reader("stt", start=pressed_at - int(1.5 * RATE))

    async def main() -> np.ndarray:
        return await asyncio.wait_for(reader.read(int(1.5 * RATE)), 5)

    got = asyncio.run(main())
    np.testing.assert_array_equal(got, ramp(pressed_at - int(1.5 * RATE), int(1.5 * RATE)))
    assert reader.position == pressed_at
    assert reader.overruns == 0


def test_reader_start_is_clamped_to_what_is_kept() -> None:
    ring = RingBuffer(1.0)
    fill(ring, 3 * RATE)
    assert ring.reader("old", start=0).position == ring.oldest
    assert ring.reader("now").position == ring.total


def test_write_larger_than_the_ring_keeps_the_newest() -> None:
    ring = RingBuffer(0.1)
    ring.write(ramp(0, 5000))
    assert ring.total == 5000
    np.testing.assert_array_equal(ring.read_range(5000 - 1600, 5000), ramp(3400, 1600))


def test_two_readers_at_different_speeds_from_a_writer_thread() -> None:
    """A fast and a slow consumer each get every sample, in order, while a
    thread writes: neither stalls the writer or the other."""
    ring = RingBuffer(10.0)
    fast, slow = ring.reader("wake", start=0), ring.reader("stt", start=0)
    total = 64000  # a multiple of both read sizes

    def writer() -> None:
        for _ in range(total // 320):
            ring.write(ramp(ring.total, 320))
            time.sleep(0.0005)

    async def consume(reader, size: int, pause: float) -> np.ndarray:
        parts = []
        while sum(map(len, parts)) < total:
            parts.append(await reader.read(size))
            await asyncio.sleep(pause)
        return np.concatenate(parts)

    async def main() -> tuple[np.ndarray, np.ndarray]:
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            return await asyncio.wait_for(
                asyncio.gather(consume(fast, 1280, 0), consume(slow, 4000, 0.01)), 30)
        finally:
            await asyncio.to_thread(thread.join)

    got_fast, got_slow = asyncio.run(main())
    np.testing.assert_array_equal(got_fast, ramp(0, total))
    np.testing.assert_array_equal(got_slow, ramp(0, total))
    assert fast.overruns == slow.overruns == 0


def test_read_blocking_waits_for_samples_and_times_out() -> None:
    ring = RingBuffer(1.0)
    reader = ring.reader("worker")
    assert reader.read_blocking(100, timeout=0.05) is None
    timer = threading.Timer(0.05, lambda: ring.write(ramp(0, 200)))
    timer.start()
    got = reader.read_blocking(150, timeout=10)
    timer.join()
    np.testing.assert_array_equal(got, ramp(0, 150))


def test_overrun_is_counted_reported_once_per_burst_and_resyncs() -> None:
    ring = RingBuffer(1.0)
    reports: list[tuple[str, int]] = []
    ring.on_overrun(lambda name, skipped: reports.append((name, skipped)))
    reader = ring.reader("slow", start=0)
    fill(ring, 3 * RATE)  # the reader is 3 s behind a 1 s ring

    async def read(n: int) -> np.ndarray:
        return await asyncio.wait_for(reader.read(n), 5)

    async def read_after_overrun(n: int) -> np.ndarray:
        """A read that finds itself behind jumps to the live edge and waits there."""
        pending = asyncio.create_task(read(n))
        for _ in range(5):
            await asyncio.sleep(0)
        resumed_at = reader.position
        fill(ring, n)
        got = await pending
        np.testing.assert_array_equal(got, ramp(resumed_at, n))
        return got

    async def main() -> None:
        await read_after_overrun(320)
        assert reader.overruns == 1
        assert reader.position == 3 * RATE + 320
        # Falling behind again right away is the same burst: counted, not re-reported.
        fill(ring, 2 * RATE)
        await read_after_overrun(320)
        assert reader.overruns == 2
        assert len(reports) == 1
        # After reading more than a second cleanly, a new overrun is a new burst.
        for _ in range(3):
            fill(ring, RATE // 2)
            await read(RATE // 2)
        fill(ring, 2 * RATE)
        await read_after_overrun(10)
        assert reader.overruns == 3
        assert len(reports) == 2

    asyncio.run(main())
    assert reports[0] == ("slow", 3 * RATE)


def test_mute_stores_zeros_and_wipes_the_preroll() -> None:
    ring = RingBuffer(2.0)
    fill(ring, RATE)
    ring.muted = True
    assert not ring.read_range(0, RATE).any()
    fill(ring, RATE)
    assert ring.total == 2 * RATE
    assert not ring.read_range(0, 2 * RATE).any()
    ring.muted = False
    fill(ring, 100)
    np.testing.assert_array_equal(ring.read_range(2 * RATE, 2 * RATE + 100),
                                  ramp(2 * RATE, 100))


def test_time_of_and_index_at_are_inverse_on_the_sample_clock() -> None:
    ring = RingBuffer(2.0)
    ring.write(ramp(0, RATE), captured_at=100.0)
    assert ring.time_of(RATE - 1) == pytest.approx(100.0)
    assert ring.time_of(RATE - 1 - 8000) == pytest.approx(99.5)
    assert ring.index_at(99.5) == RATE - 1 - 8000
    assert ring.index_at(ring.time_of(1234)) == 1234


def test_cancelled_read_leaves_no_waiter_behind() -> None:
    ring = RingBuffer(1.0)
    reader = ring.reader("r")

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.05)
        fill(ring, 100)
        np.testing.assert_array_equal(await asyncio.wait_for(reader.read(100), 5),
                                      ramp(0, 100))

    asyncio.run(main())
    with pytest.raises(ValueError):
        reader.read_blocking(ring.capacity + 1, timeout=0)  # could never be whole
    reader.close()
    with pytest.raises(ValueError):
        reader.read_blocking(1, timeout=0)
