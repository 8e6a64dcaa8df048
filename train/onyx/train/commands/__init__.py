"""The training commands that `onyx-train` plugs into `onyx` (entry points `onyx.commands`).

One module per command concern: `train` (image, text), `evaluate`, `export`, `data`, `demo`,
`tune` (image, text).
Importing this package stays light (no torch): `onyx --help` and `onyx serve` load it too.
"""

from __future__ import annotations

from onyx.train.commands.data import data_group
from onyx.train.commands.demo import demo_command
from onyx.train.commands.evaluate import evaluate_command
from onyx.train.commands.export import export_command
from onyx.train.commands.train import train_group
from onyx.train.commands.tune import tune_group

__all__ = [
    "data_group",
    "demo_command",
    "evaluate_command",
    "export_command",
    "train_group",
    "tune_group",
]
