"""`onyx data`: dataset tools (`onyx data dedup`)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("data")
def data_group() -> None:
    """Dataset tools."""


@data_group.command("dedup")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--max-distance",
    type=click.IntRange(0, 64),
    default=4,
    show_default=True,
    help="Near-duplicate candidates: differing bits of the 64-bit dHash (each candidate is "
    "then confirmed on the pixels).",
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Delete all but one file of each duplicate group, except groups whose copies carry "
    "different labels (default: report only).",
)
@click.option("--dry-run", is_flag=True, help="Report only (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--check",
    is_flag=True,
    help="For CI: print only the summary line; exit 1 on leakage or label conflicts.",
)
def dedup_command(
    directory: Path, max_distance: int, apply_: bool, dry_run: bool, as_json: bool, check: bool
) -> None:
    """Find exact and near-duplicate images under DIRECTORY: pairs that straddle train/ val/
    test/ (leakage) and the same image under two class folders (label conflict). Near
    duplicates are confirmed on the pixels, never on a perceptual hash alone; pairs too flat
    to confirm are listed as unconfirmed and left alone.

    Exits 1 when it finds leakage or label conflicts (after --apply: when any remain), so a
    script or CI can gate on it; 0 otherwise. Nothing is deleted without --apply; the copy in
    the earliest split is kept.

    \b
    Examples:
      onyx data dedup data/pets                 # report only
      onyx data dedup data/pets --check         # CI gate
      onyx data dedup data/pets --json > dups.json
      onyx data dedup data/pets --apply         # delete the extra copies
    """
    from onyx.train.data.dedup import (
        apply_removal,
        find_duplicates,
        format_report,
        report_json,
        summary_line,
    )

    if apply_ and (dry_run or check):
        other = "--dry-run" if dry_run else "--check"
        raise click.BadParameter(f"--apply and {other} exclude each other", param_hint="--apply")
    report = find_duplicates(directory, max_distance)
    removed = apply_removal(report) if apply_ else 0
    if as_json:
        document = report_json(report, directory)
        document["removed"] = removed
        click.echo(json.dumps(document, indent=2))
    elif check:
        click.echo(summary_line(report))
    else:
        click.echo(format_report(report, directory))
        if apply_:
            click.echo(f"removed {removed} files")
        elif report.remove:
            click.echo(f"dry run: --apply would remove {len(report.remove)} files")
    if apply_:
        report = find_duplicates(directory, max_distance)  # what is left
    if report.failed:
        click.get_current_context().exit(1)
