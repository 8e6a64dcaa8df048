"""A command whose definition is built on first use, for options generated from a dataclass
whose module imports torch: listing `onyx`'s commands must not pay for importing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


class LazyCommand(click.Command):
    """Stands in for the command `build()` returns; parsing, --help and running use that one."""

    def __init__(self, name: str, build: Callable[[], click.Command], short_help: str) -> None:
        super().__init__(name, short_help=short_help, help=short_help)
        self._build = build
        self._command: click.Command | None = None

    @property
    def command(self) -> click.Command:
        if self._command is None:
            self._command = self._build()
        return self._command

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # The group then runs `ctx.command`: the real command.
        return self.command.make_context(info_name, args, parent, **extra)
