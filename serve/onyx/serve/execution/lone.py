"""When a lone request may run its model on the event loop itself: while nobody waits for it.

Handing a batch to a session thread and back costs a request on an idle server two wake-ups
(the thread's, then the event loop's) and a few loop turns: a sizeable share of its p50 at one
client for a model that runs in about a millisecond (bench/README.md, "Small measurements behind
execution choices"). Running it on
the loop saves that, but the loop then reads no other request until the model is done: with
clients waiting, every request would run alone, one after the other, and batching would never
form.

So a lone request runs on the loop only while the server is otherwise idle: no work waiting for
the loop before the run, none a batch running in a session thread anywhere in the server could
bring. Whether anyone came during the run shows when it ends: a request that came in meanwhile
has left the loop's selector ready to read (gRPC's poller thread wakes the loop through a
socket), and a batch that finished in a session thread has too. Work waiting then turns inline
runs off for `BACK_OFF_S`, longer than a busy spell's gaps.
"""

from __future__ import annotations

import asyncio
import collections
import math
import selectors
from dataclasses import dataclass
from typing import cast

# How long inline runs stay off once work waited for one to end.
BACK_OFF_S = 0.1


@dataclass
class LoneRuns:
    """The server's record of its inline runs: one per server, since every model's requests
    wait on the same event loop. Used from the event loop only."""

    off_until: float = -math.inf  # time.perf_counter() seconds
    # Batches running in session threads now, every model's: the loop must stay free for them.
    threaded: int = 0

    def allows(self, now: float) -> bool:
        """May a lone request reaching its model at `now` run on the event loop?"""
        return not self.threaded and now >= self.off_until

    def ran(self, ended: float, waited: bool) -> None:
        """An inline run ended at `ended`; `waited`: work came in for the loop meanwhile."""
        if waited:
            self.off_until = ended + BACK_OFF_S


# The private parts of asyncio's own event loops that `work_waiting` reads, and what it takes
# each to be (asyncio/base_events.py, asyncio/selector_events.py). They are no public API: a
# Python release may change them, and then inline runs stop (test_lone checks they are there).
LOOP_INTERNALS: dict[str, type] = {
    "_ready": collections.deque,  # callbacks due now (asyncio.Handle)
    "_scheduled": list,  # timers, a heap by when() (asyncio.TimerHandle)
    "_selector": selectors.BaseSelector,  # sockets and pipes the loop waits on
}
# (ready callbacks, scheduled timers, selector) of a loop whose pending work can be seen.
Internals = tuple[
    collections.deque[asyncio.Handle], list[asyncio.TimerHandle], selectors.BaseSelector
]


def loop_internals(loop: asyncio.AbstractEventLoop) -> Internals | str:
    """The event loop's pending work as `work_waiting` reads it, or why it cannot be read
    (naming the attribute missing or changed). The one place that touches the loop's private
    attributes: asyncio's own loops have them; others (uvloop) keep their pending work out of
    reach, and so would a Python that changed them."""
    found = tuple(getattr(loop, name, None) for name in LOOP_INTERNALS)
    for (name, kind), value in zip(LOOP_INTERNALS.items(), found, strict=True):
        if not isinstance(value, kind):
            what = "missing" if value is None else f"a {type(value).__name__}"
            return f"{type(loop).__name__}.{name} is {what}, not a {kind.__name__}"
    return cast(Internals, found)


def can_peek(loop: asyncio.AbstractEventLoop) -> bool:
    """Can `work_waiting` see this loop's pending work? asyncio's own loops, yes; others
    (uvloop) keep it out of reach, and their servers never run lone requests inline."""
    return not isinstance(loop_internals(loop), str)


def work_waiting(loop: asyncio.AbstractEventLoop) -> bool:
    """Is anything ready for the event loop right now (a request gRPC received, a finished
    batch, a callback, a timer due)? Its selector is asked without waiting (level-triggered:
    nothing is consumed). True for a loop it cannot ask (`can_peek`): never inline there."""
    internals = loop_internals(loop)
    if isinstance(internals, str):
        return True
    ready, scheduled, selector = internals
    if ready or (scheduled and scheduled[0].when() <= loop.time()):
        return True
    return bool(selector.select(0))
