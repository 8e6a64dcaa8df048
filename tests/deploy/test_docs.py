"""The operator's pages (docs/deploy.md, docs/operating.md, docs/serving.md) only point at files
that exist and flags that `onyx` has (or, in docs/deploy.md, that land with the parts of issue
12/16 listed in test_manifests.PENDING)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from onyx.cli import main
from onyx.serve.cli import serve_command
from tests.deploy.test_manifests import PENDING

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOC = DOCS / "deploy.md"
OPERATOR_PAGES = [DOC, DOCS / "operating.md", DOCS / "serving.md"]
NOT_OURS = {"--gpus", "--build-arg", "--target", "--isolation"}  # docker's and podman's


def _flags(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in [*p.opts, *getattr(p, "secondary_opts", [])]}


def _commands(command: click.Command, name: str = "onyx") -> Iterator[click.Command]:
    """`command` and every command under it."""
    yield command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=name)
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None:
                yield from _commands(sub, sub_name)


def _quoted_flags(page: Path) -> set[str]:
    return set(re.findall(r"`(--[a-z][a-z-]+)", page.read_text())) - NOT_OURS


@pytest.mark.parametrize("page", OPERATOR_PAGES, ids=lambda p: p.name)
def test_paths_exist(page: Path) -> None:
    paths = set(re.findall(r"`((?:deploy|bench|docs|protos)/[\w./-]+?)`", page.read_text()))
    missing = sorted(p for p in paths if not (ROOT / p.split(":")[0]).exists())
    assert not missing, missing


def test_deploy_guide_paths_are_many() -> None:
    assert len(set(re.findall(r"`((?:deploy|bench|docs)/[\w./-]+?)`", DOC.read_text()))) > 5


def test_serve_flags_exist() -> None:
    unknown = sorted(f for f in _quoted_flags(DOC) if f not in _flags(serve_command))
    assert not [f for f in unknown if f not in PENDING], unknown


@pytest.mark.parametrize("page", OPERATOR_PAGES[1:], ids=lambda p: p.name)
def test_flags_of_the_operating_and_serving_guides_exist(page: Path) -> None:
    known = set().union(*(_flags(c) for c in _commands(main)))
    flags = _quoted_flags(page)
    assert flags, f"{page.name} quotes no flag"
    unknown = sorted(flags - known)
    assert not unknown, f"{page.name} quotes flags no onyx command has: {unknown}"
