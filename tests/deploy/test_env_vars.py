"""Every environment variable an `onyx` command reads is named in that command's --help and in
the table of docs/operating.md, so an operator configuring a container finds them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from onyx.cli import main

TABLE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "operating.md"
Found = tuple[tuple[str, ...], str]  # (command path, variable)


def _env_vars(command: click.Command, path: tuple[str, ...]) -> Iterator[Found]:
    """(command path, variable) for every option of every command under `command`."""
    ctx = click.Context(command, info_name=path[-1] if path else "onyx")
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from _env_vars(sub, (*path, name))
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
            yield from ((path, name) for name in names)


ENV_VARS = sorted(set(_env_vars(main, ())))


def test_the_serve_options_all_have_one() -> None:
    serve = {name for path, name in ENV_VARS if path == ("serve",)}
    assert {"ONYX_PORT", "ONYX_LOG_FORMAT", "ONYX_MAX_CONNECTION_AGE_S", "ONYX_TLS_CERT",
            "ONYX_MAX_IMAGE_PIXELS", "ONYX_CONFIG"} <= serve  # fmt: skip


@pytest.mark.parametrize("path", sorted({path for path, _ in ENV_VARS}), ids=" ".join)
def test_help_names_every_env_var(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    missing = [name for p, name in ENV_VARS if p == path and f"env var: {name}" not in shown]
    assert not missing, f"onyx {' '.join(path)} --help does not name {missing}"


def test_the_operating_guide_lists_every_env_var() -> None:
    text = TABLE_PAGE.read_text()
    missing = sorted({name for _, name in ENV_VARS if f"`{name}`" not in text})
    assert not missing, f"docs/operating.md's environment variable table lacks {missing}"
