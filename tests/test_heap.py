"""Full collections kept off a turn's path: start-up survivors are frozen, and
what a later settle replaces can still be collected."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from pathlib import Path

import pytest

from edge_agent.agent import heap
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.harness import Harness, run
from edge_agent.tools.voices import silence


class Node:
    """A tracked object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.me = self


def _tracked(obj: object) -> bool:
    """Whether a collection would walk ``obj`` (frozen objects are not listed)."""
    return any(o is obj for o in gc.get_objects())


def test_settle_collects_garbage_and_freezes_the_survivors() -> None:
    kept, dropped = Node(), Node()
    gone = weakref.ref(dropped)
    del dropped
    frozen, took = heap.settle()
    try:
        assert gone() is None  # the cycle was collected, not frozen
        assert frozen > 0 and took >= 0.0
        assert not _tracked(kept)
    finally:
        gc.unfreeze()


def test_what_a_later_settle_replaces_is_collected() -> None:
    replaced = Node()
    gone = weakref.ref(replaced)
    heap.settle()
    try:
        del replaced  # frozen, then dropped (a reload swapped it out)
        heap.settle()
        assert gone() is None
    finally:
        gc.unfreeze()


def test_the_daemon_freezes_its_start_up_objects_when_warm(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        with FakeCloud() as fake:
            async with Harness(tmp_path, fake, silence(2.0), gpio=False) as h:
                await asyncio.wait_for(h.daemon.warmed.wait(), 60)
                assert gc.get_freeze_count() > 10_000

    caplog.set_level(logging.INFO, logger="edge_agent.agent.daemon")
    try:
        run(scenario(), 90)
    finally:
        gc.unfreeze()
    assert any("objects frozen out of later collections" in r.getMessage()
               for r in caplog.records)
