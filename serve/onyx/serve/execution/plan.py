"""The execution plan: how one model version's batches run, decided once at load (`sizing`).

A plan is a value: the sessions a version runs on, one group per intra-op thread count (the
session at index i of each group is slot i's), and the limits a `session_pool.SessionPool`
follows when it runs the plan. Which plan a model gets, and why, is `sizing`'s business; what
each kind of plan does is told in docs/workers.md.

    plan = await plan_execution(path, config, runtime, instances, executor)   # sizing
    pool = SessionPool(plan, executor, lone)
    log.debug("%s", plan.describe())
"""

from __future__ import annotations

from dataclasses import dataclass

from onyx.serve.execution.runtime import Session
from onyx.serve.execution.thread_choice import ThreadChoice


@dataclass(frozen=True)
class TrialTime:
    """One load-time trial run: a batch of `rows` (`elements` input elements) took `ms` on the
    sessions of the plan's thread count at index `option`."""

    rows: int
    elements: int
    option: int
    ms: float


@dataclass(frozen=True)
class ExecutionPlan:
    """How a version's batches run: on which sessions, how many at once, which on the loop."""

    # One group of sessions per intra-op thread count, the fewest threads first; each group
    # has one session per slot (a batch in flight).
    by_threads: tuple[tuple[Session, ...], ...]
    # A tiny model: every batch up to this many input elements runs on the event loop (0: none).
    inline_elements: int = 0
    # A small model: a lone request up to this many input elements may run on the event loop
    # while nobody waits (`lone`; 0: never).
    lone_elements: int = 0
    # The session lone inline runs use, if not their slot's (the trial's all-core session).
    lone_session: Session | None = None
    # With several thread counts: the trial's times, which seed the per-batch choice.
    choice_seed: tuple[TrialTime, ...] = ()

    def __post_init__(self) -> None:
        if not self.by_threads or len({len(group) for group in self.by_threads}) != 1:
            raise ValueError("a plan needs one session per slot in every thread count's group")
        if self.choice_seed and len(self.by_threads) < 2:
            raise ValueError("a thread choice seed needs two thread counts or more")
        if self.lone_session is not None and not self.lone_elements:
            raise ValueError("a lone session needs a lone limit (lone_elements)")

    @property
    def slots(self) -> int:
        """Batches that may run at once (the batcher's `max_concurrent_batches`)."""
        return len(self.by_threads[0])

    @property
    def threads(self) -> tuple[int, ...]:
        """The intra-op thread counts of the slots' sessions, one per group."""
        return tuple(group[0].intra_op_threads for group in self.by_threads)

    @property
    def lone_allowed(self) -> bool:
        """May a lone request run on the event loop at all (on a loop that lets `lone` see)?"""
        return self.lone_elements > 0

    @property
    def default_session(self) -> Session:
        """A session of the default thread count (the last group): providers, their reason."""
        return self.by_threads[-1][0]

    def sessions(self) -> list[Session]:
        """Every session of the plan, once each (all of them are warmed up)."""
        lone = [self.lone_session] if self.lone_session is not None else []
        return [*(session for group in self.by_threads for session in group), *lone]

    def thread_choice(self) -> ThreadChoice | None:
        """A fresh per-batch thread choice seeded with the trial's times; None with one count."""
        if len(self.by_threads) < 2:
            return None
        choice = ThreadChoice(self.threads)
        for time in self.choice_seed:
            choice.record(time.rows, time.option, time.ms / 1e3, time.elements)
        return choice

    def describe(self) -> str:
        """The plan in one line, for logs."""
        slots = f"{self.slots} slot(s) of {'/'.join(map(str, self.threads))} intra-op threads"
        if self.inline_elements:
            return f"{slots}; every batch up to {self.inline_elements} elements on the loop"
        if len(self.by_threads) > 1:
            return f"{slots}; each batch on the thread count faster of late"
        if self.lone_allowed:
            lone = self.lone_session or self.default_session
            return (
                f"{slots}; a lone request up to {self.lone_elements} elements on the loop "
                f"with {lone.intra_op_threads} threads"
            )
        return slots
