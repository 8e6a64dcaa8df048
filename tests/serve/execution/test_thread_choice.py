"""The per-batch choice of intra-op threads: the faster of late per size class, the other tried
now and then so the choice follows the machine's load.

python -m pytest tests/serve/execution/test_thread_choice.py
"""

from __future__ import annotations

import pytest

from onyx.serve.execution.thread_choice import EXPLORE_EVERY, ThreadChoice, shape_class, size_class


def timed(costs: dict[int, float]) -> ThreadChoice:
    """A choice between 1 and 2 threads that has seen batches of one cost `costs[threads]`."""
    choice = ThreadChoice((1, 2))
    for option, threads in enumerate(choice.threads):
        choice.record(1, option, costs[threads], 1)
    return choice


def test_size_classes_group_counts_by_powers_of_two() -> None:
    assert [size_class(rows) for rows in (1, 2, 3, 4, 7, 8, 16)] == [1, 2, 2, 3, 3, 4, 5]
    assert shape_class(4, 4 * 100) == shape_class(5, 5 * 120) != shape_class(4, 4 * 30)


def test_every_thread_count_is_tried_before_any_is_preferred() -> None:
    choice = ThreadChoice((1, 2))
    assert choice.best(1, 1) is None
    first = choice.choose(1, 1)
    choice.record(1, first, 1.0, 1)
    assert choice.choose(1, 1) == 1 - first


def test_the_faster_runs_and_the_other_is_tried_once_in_a_while() -> None:
    choice = timed({1: 0.9e-3, 2: 1.2e-3})
    picks = [choice.choose(1, 1) for _ in range(4 * EXPLORE_EVERY)]
    assert picks.count(1) == 4  # the 2-thread sessions, once per EXPLORE_EVERY
    assert picks.count(0) == 4 * EXPLORE_EVERY - 4
    assert choice.best(1, 1) == 1


def test_the_choice_follows_a_change_in_load() -> None:
    choice = timed({1: 0.9e-3, 2: 1.2e-3})
    for _ in range(10):  # the one-thread runs slow down (the machine got busy)
        choice.record(1, 0, 2.0e-3, 1)
    assert choice.best(1, 1) == 2
    assert choice.choose(1, 1) == 1


def test_costs_are_per_input_element_and_per_size_class() -> None:
    choice = ThreadChoice((1, 2))
    choice.record(1, 0, 1.0e-3, 128)  # one row: one thread is faster...
    choice.record(1, 1, 1.3e-3, 128)
    choice.record(16, 0, 16e-3, 16 * 128)  # ... sixteen: two are
    choice.record(16, 1, 8e-3, 16 * 128)
    best = (choice.best(1, 128), choice.best(16, 16 * 128), choice.best(4, 4 * 128))
    assert best == (1, 2, None)
    assert choice.best(1, 16) is None  # short rows: a class of their own
    choice.record(16, 0, 5e-3, 16 * 128)  # one fast run
    assert choice.best(16, 16 * 128) == 2  # smoothed: one run does not flip it


def test_a_choice_needs_two_thread_counts() -> None:
    with pytest.raises(ValueError, match="two thread counts"):
        ThreadChoice((2,))
