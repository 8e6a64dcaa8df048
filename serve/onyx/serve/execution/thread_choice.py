"""Which intra-op thread count runs a model's next batch: chosen per batch, by measurement.

Whether ONNX Runtime's second intra-op thread helps a model that runs in a few milliseconds
depends on what else the cores are doing *now*: on a shared machine two processes started a
second apart can find opposite answers for the same batch (bench/README.md, "Small measurements
behind execution choices"). A choice made once at load is a coin toss
that then holds for the process's life. So a CPU model of a few ms keeps a session of each
thread count per slot, and every batch goes to the one whose recent runs of batches of its size
were faster per input element; one batch in `EXPLORE_EVERY` of a shape goes to the other, so its
estimate follows the machine's load. Costs are kept per shape class (rows, and elements per row,
rounded down to powers of two): threads pay off on big batches long before they do on single
inputs, and a fixed cost per run weighs more on a short text than on a long one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# One batch in this many of a size class runs on the thread count that is not the best now.
EXPLORE_EVERY = 16
# Weight of the newest run in a cost estimate: the last ~5 runs of an option count most.
SMOOTHING = 0.2


def size_class(count: int) -> int:
    """1 for one, 2 for 2-3, 3 for 4-7, ...: counts whose costs are alike."""
    return max(1, count).bit_length()


def shape_class(rows: int, elements: int) -> tuple[int, int]:
    """Batches whose costs per element are alike: by rows and by elements per row."""
    return size_class(rows), size_class(elements // max(1, rows))


@dataclass
class ThreadChoice:
    """Per size class, the smoothed seconds per input element of each thread count."""

    threads: tuple[int, ...]
    _costs: dict[tuple[tuple[int, int], int], float] = field(default_factory=dict)
    _batches: dict[tuple[int, int], int] = field(default_factory=dict)
    # Runs are recorded from the sessions' threads, choices made on the event loop.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if len(self.threads) < 2:
            raise ValueError(f"a choice needs two thread counts or more, got {self.threads}")

    def choose(self, rows: int, elements: int) -> int:
        """The index in `threads` of the thread count to run a batch of `rows` on (`elements`
        input elements in all)."""
        size = shape_class(rows, elements)
        with self._lock:
            turn = self._batches.get(size, 0)
            self._batches[size] = turn + 1
            costs = [self._costs.get((size, option)) for option in range(len(self.threads))]
        unknown = [option for option, cost in enumerate(costs) if cost is None]
        if unknown:
            return unknown[0]
        ranked = sorted(range(len(costs)), key=lambda option: costs[option] or 0.0)
        if turn % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            return ranked[1 + (turn // EXPLORE_EVERY) % (len(ranked) - 1)]
        return ranked[0]

    def record(self, rows: int, option: int, seconds: float, elements: int) -> None:
        """A batch of `rows` (`elements` input elements) ran on `threads[option]` in `seconds`."""
        cost = seconds / max(1, elements)
        key = (shape_class(rows, elements), option)
        with self._lock:
            old = self._costs.get(key)
            self._costs[key] = cost if old is None else old + SMOOTHING * (cost - old)

    def best(self, rows: int, elements: int) -> int | None:
        """The thread count such batches run on now (None before both were timed)."""
        size = shape_class(rows, elements)
        with self._lock:
            known = {o: c for (s, o), c in self._costs.items() if s == size}
        if len(known) < len(self.threads):
            return None
        return self.threads[min(known, key=known.__getitem__)]
