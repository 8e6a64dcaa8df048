"""`python -m onyx.train.tune image|text ...`: `onyx tune` without the `onyx` entry point (for a
checkout whose installed metadata predates the command)."""

from __future__ import annotations

from onyx.train.commands.tune import tune_group

if __name__ == "__main__":
    tune_group(prog_name="onyx tune")
