"""Keep full garbage collections off a turn's path.

CPython's full (generation 2) collection walks every tracked object the
process holds; after start-up that is the wake engines, the cloud SDK and the
audio stack, about 54,000 objects, and one walk held the interpreter for 17 ms
on the bench's x86-64 machine (a turn step that took 18.2 ms). It comes when
the count of surviving objects has grown enough, which may be mid-answer.
``settle`` collects once, at a moment nothing waits (start-up work over, a
reload applied), then moves the survivors to the permanent generation, which
later collections skip."""

from __future__ import annotations

import gc
import time


def settle() -> tuple[int, float]:
    """Collect what start-up left behind and freeze the rest; how many objects
    are frozen and the seconds it took. What an earlier call froze is thawed
    first, so objects a reload replaced can still be collected."""
    began = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count(), time.perf_counter() - began
