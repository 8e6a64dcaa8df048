"""`onyx train text`: the sentiment trainer's command (registered on the `onyx train` group).

torch is imported only when the command runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from onyx.train.cli import require_torch

Choice = click.Choice


@click.command("text")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("runs/text"),
    show_default=True,
    help="Where best.pt, last.pt, metrics.json and the plots go.",
)
@click.option(
    "--val-data",
    type=click.Path(exists=True, path_type=Path),
    help="Validation file; without it --val-fraction of each label is held out.",
)
@click.option(
    "--text-column", default="text", show_default=True, help="CSV/TSV column or JSON key."
)
@click.option(
    "--label-column", default="label", show_default=True, help="CSV/TSV column or JSON key."
)
@click.option("--labels", default="", help="Comma-separated label set and order (default: sorted).")
@click.option("--min-freq", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--max-vocab",
    type=click.IntRange(3),
    default=30_000,
    show_default=True,
    help="Vocabulary size including <pad> and <unk>.",
)
@click.option(
    "--max-length",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Tokens kept per text (the server truncates the same way).",
)
@click.option("--cell", type=Choice(["lstm", "gru"]), default="lstm", show_default=True)
@click.option("--layers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--hidden", type=click.IntRange(1), default=128, show_default=True)
@click.option("--embed-dim", type=click.IntRange(1), default=64, show_default=True)
@click.option("--bidirectional/--unidirectional", default=False, show_default=True)
@click.option(
    "--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True
)
@click.option("--pooling", type=Choice(["last", "mean", "max"]), default="last", show_default=True)
@click.option(
    "--vectors",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pretrained word vectors, text format: 'word v1 v2 ...' per line.",
)
@click.option("--freeze-vectors/--train-vectors", default=False, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=3e-3, show_default=True)
@click.option(
    "--patience",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Early-stop after this many epochs without improvement (0: never).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--resume",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Continue from a last.pt.",
)
@click.option(
    "--log-level", type=Choice(["debug", "info", "warning"]), default="info", show_default=True
)
def train_text_command(
    data: Path,
    out: Path,
    val_data: Path | None,
    labels: str,
    vectors: Path | None,
    resume: Path | None,
    log_level: str,
    **options: object,
) -> None:
    """Train a sentiment (text) classifier on DATA: a .csv/.tsv/.jsonl file or an IMDb folder.

    Example: onyx train text reviews.jsonl --cell gru --bidirectional --out runs/sentiment
    """
    require_torch()
    from onyx.serve.logs import configure_logging
    from onyx.train.config import TextTrainConfig
    from onyx.train.engine import fit
    from onyx.train.text.data import DataError

    configure_logging(log_level)
    config = TextTrainConfig(
        data=data,
        out_dir=out,
        val_data=str(val_data or ""),
        vectors=str(vectors or ""),
        resume=str(resume or ""),
        labels=tuple(x.strip() for x in labels.split(",") if x.strip()),
        **options,  # type: ignore[arg-type]
    )
    try:
        result = fit(config)
    except (DataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if result.interrupted:
        click.echo(f"interrupted; resume with --resume {result.last_checkpoint}", err=True)
        sys.exit(130)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
        click.echo(
            f"best val accuracy {result.best_accuracy:.4f}; checkpoint {result.best_checkpoint}"
        )
