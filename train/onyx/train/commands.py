"""The training commands that `onyx-train` plugs into `onyx` (entry points `onyx.commands`)."""

from __future__ import annotations

from onyx.train.cli import demo_command, export_command, train_group
from onyx.train.image_cli import data_group, evaluate_command, train_image_command
from onyx.train.text_cli import train_text_command

train_group.add_command(train_image_command)
train_group.add_command(train_text_command)

__all__ = ["data_group", "demo_command", "evaluate_command", "export_command", "train_group"]
