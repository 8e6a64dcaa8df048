"""`onyx evaluate`: score a checkpoint or an exported model on labelled images or texts."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("evaluate")
@click.argument(
    "model_path", metavar="CHECKPOINT_OR_MODEL", type=click.Path(exists=True, path_type=Path)
)
@click.argument("data", metavar="DATA", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("eval"),
    show_default=True,
    help="Where metrics.json and the PNG plots go.",
)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--explain",
    type=click.IntRange(0),
    default=0,
    metavar="N",
    help="Also write gallery.png (per class: the N most confident correct predictions and the N "
    "most confident mistakes, with their maps) and filters.png (the first-layer filters).",
)
@click.option(
    "--positive-class",
    default="",
    help="Two classes: the label whose precision/recall/F1, ROC and precision-recall curves "
    "are reported (default: the label that does not read as negative, such as not_x or "
    "other, else the second label).",
)
@click.option("--text-column", help="Text models: CSV/TSV column or JSON key of the text "
              "(default: the training run's, else text).")  # fmt: skip
@click.option("--label-column", help="Text models: CSV/TSV column or JSON key of the label "
              "(default: the training run's, else label).")  # fmt: skip
def evaluate_command(
    model_path: Path,
    data: Path,
    out: Path,
    batch_size: int,
    positive_class: str,
    text_column: str | None,
    label_column: str | None,
    explain: int,
) -> None:
    """Score a checkpoint (best.pt) or an exported model directory (models/NAME or
    models/NAME/VERSION) on DATA: accuracy, precision, recall, F1 (per class and macro),
    confusion matrix; for two classes ROC-AUC and average precision of the positive class.
    metrics.json and PNG plots (confusion matrix, the run's training curves, ROC and
    precision-recall) go in --out.

    DATA: for an image model, a folder of class folders (or its test/ or val/); for a text
    model, a .csv/.tsv/.jsonl file with text and label columns, or a folder of label folders
    of .txt files.

    \b
    Examples:
      onyx evaluate runs/pets/best.pt data/pets/test --out eval/torch
      onyx evaluate models/pets data/pets/test --out eval/onnx     # newest version
      onyx evaluate models/cats data/cats --positive-class cat
      onyx evaluate runs/text/best.pt reviews_test.csv --out eval/text
      onyx evaluate runs/pets/best.pt data/pets/test --explain 4   # + gallery, filters
    """
    from onyx.contract.errors import ServeError
    from onyx.settings.logs import configure_logging
    from onyx.train.evaluate import scoring as ev

    configure_logging("warning")
    try:
        predictor = ev.load_predictor(model_path)
        defaults = predictor.columns
        columns = (text_column or defaults[0], label_column or defaults[1])
        evaluation = ev.evaluate_data(predictor, data, batch_size, positive_class, columns)
    except (ValueError, FileNotFoundError, ServeError) as exc:
        raise click.ClickException(str(exc)) from exc
    written = ev.write_outputs(evaluation, predictor, out)
    if explain:
        from onyx.train.evaluate.gallery import write_explanations

        try:
            written += write_explanations(model_path, predictor, evaluation, explain, out)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(ev.summary(evaluation.report))
    click.echo("wrote " + ", ".join(str(p) for p in written))
