"""README.md and docs/*.md stay linked and true to the tree.

- every docs page can be reached from README.md by following links (a page nobody links to is a
  page nobody reads);
- every relative link in README.md and docs/*.md points at a file that exists;
- every `onyx.x.y` name quoted in them is a module of the checkout (or a name defined at the top
  of one), and every `onyx.v1.X` a service, message or enum of the `onyx.v1` protos;
- README's test command is what `.ci/run` runs.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
SOURCE_ROOTS = (ROOT / "serve", ROOT / "train")
PROTO_PACKAGE = "onyx.v1"

# [text](target) and ![alt](target), with an optional "title".
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
# `onyx.` not inside a path or a host name (`deploy/grafana/onyx.json`, `x.onyx.svc`).
_DOTTED = re.compile(r"(?<![\w./-])onyx(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def relative_links(page: Path) -> list[str]:
    """The page's link targets that point into the checkout (no URL, no in-page anchor)."""
    targets = _LINK.findall(page.read_text())
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def link_target(page: Path, target: str) -> Path:
    return (page.parent / target.split("#")[0]).resolve()


def quoted_names(text: str) -> set[str]:
    """Dotted `onyx...` names inside the text's code spans."""
    return {name for span in _CODE_SPAN.findall(text) for name in _DOTTED.findall(span)}


def module_file(parts: list[str]) -> Path | None:
    """The source file (or package folder) of the module `parts` names, if the checkout has it."""
    for root in SOURCE_ROOTS:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py", base):
            if candidate.exists():
                return candidate
    return None


def top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level."""
    if path.is_dir():
        return set()
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@cache
def proto_declarations() -> frozenset[str]:
    """Services, messages and enums of the `onyx.v1` protos."""
    found: set[str] = set()
    for proto in (ROOT / "protos").rglob("*.proto"):
        text = proto.read_text()
        if re.search(rf"^package {re.escape(PROTO_PACKAGE)};", text, re.M):
            found.update(re.findall(r"^\s*(?:service|message|enum)\s+(\w+)", text, re.M))
    return frozenset(found)


def names_something(name: str) -> bool:
    """Whether a quoted dotted name is a module of the checkout, a top-level name of one, or a
    declaration of the `onyx.v1` protos."""
    if name == PROTO_PACKAGE or name.startswith(PROTO_PACKAGE + "."):
        rest = name.removeprefix(PROTO_PACKAGE).lstrip(".")
        return not rest or rest.split(".")[0] in proto_declarations()
    parts = name.split(".")
    if module_file(parts) is not None:
        return True
    # The last part may be a function, class or constant of the module before it.
    module = module_file(parts[:-1]) if len(parts) > 2 else None
    return module is not None and parts[-1] in top_level_names(module)


def reachable_from_readme() -> set[Path]:
    """Every README.md or docs page reached by following links from README.md."""
    seen, todo = {README}, [README]
    while todo:
        page = todo.pop()
        for target in relative_links(page):
            found = link_target(page, target)
            if found in DOCS and found not in seen:
                seen.add(found)
                todo.append(found)
    return seen


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    unreached = [str(p.relative_to(ROOT)) for p in DOCS if p not in reachable_from_readme()]
    assert not unreached, f"no link leads from README.md to {unreached}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(page: Path) -> None:
    broken = [t for t in relative_links(page) if not link_target(page, t).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_onyx_name_exists(page: Path) -> None:
    unknown = sorted(n for n in quoted_names(page.read_text()) if not names_something(n))
    assert not unknown, f"{page.relative_to(ROOT)} names what the tree lacks: {unknown}"


def test_the_docs_quote_many_module_names_and_each_is_checked() -> None:
    # Not vacuous: the pages do quote modules, and a name that is not there is caught.
    quoted = set().union(*(quoted_names(p.read_text()) for p in PAGES))
    assert len(quoted) > 40, sorted(quoted)
    assert names_something("onyx.serve.pipeline")
    assert names_something("onyx.train.tasks.image.models.list_models")
    assert names_something("onyx.v1.ModelConfig")
    assert not names_something("onyx.serve.no_such_module")
    assert not names_something("onyx.contract.preprocess.no_such_function")
    assert not names_something("onyx.v1.NoSuchMessage")


def test_the_readme_test_command_is_what_ci_runs() -> None:
    commands = re.findall(r"^    (python3 -m venv .*)$", README.read_text(), re.M)
    assert len(commands) == 2, commands
    ci = re.sub(r" --quiet", "", (ROOT / ".ci" / "run").read_text())
    missing = [step for step in commands[1].split(" && ") if step not in ci]
    assert not missing, f".ci/run lacks README's steps {missing}"
