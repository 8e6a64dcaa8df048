"""`onyx data`: dataset tools (`onyx data dedup`)."""

from __future__ import annotations

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
    help="Near duplicates: differing bits of the 64-bit dHash.",
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Delete all but one file of each duplicate group (default: report only).",
)
@click.option("--dry-run", is_flag=True, help="Report only (the default).")
def dedup_command(directory: Path, max_distance: int, apply_: bool, dry_run: bool) -> None:
    """Find exact and near-duplicate images under DIRECTORY, including pairs that straddle
    train/ val/ test/ (leakage); the copy in the earliest split is kept.

    \b
    Examples:
      onyx data dedup data/pets                 # report only
      onyx data dedup data/pets --apply         # delete the extra copies
    """
    from onyx.train.dedup import apply_removal, find_duplicates, format_report

    if apply_ and dry_run:
        raise click.BadParameter("--apply and --dry-run exclude each other", param_hint="--apply")
    report = find_duplicates(directory, max_distance)
    click.echo(format_report(report, directory))
    if apply_:
        click.echo(f"removed {apply_removal(report)} files")
    elif report.remove:
        click.echo(f"dry run: --apply would remove {len(report.remove)} files")
