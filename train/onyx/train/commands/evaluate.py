"""`onyx evaluate`: score a checkpoint or an exported model on a folder of labelled images."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("evaluate")
@click.argument(
    "model_path", metavar="CHECKPOINT_OR_MODEL", type=click.Path(exists=True, path_type=Path)
)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
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
def evaluate_command(
    model_path: Path, data_dir: Path, out: Path, batch_size: int, explain: int
) -> None:
    """Score a checkpoint (best.pt) or an exported model directory (models/NAME or
    models/NAME/VERSION) on DATA_DIR: accuracy, precision, recall, F1 (per class and macro),
    ROC-AUC for two classes, confusion matrix; metrics.json and PNG plots in --out.

    \b
    Examples:
      onyx evaluate runs/pets/best.pt data/pets/test --out eval/torch
      onyx evaluate models/pets data/pets/test --out eval/onnx     # newest version
      onyx evaluate runs/pets/best.pt data/pets/test --explain 4   # + gallery, filters
    """
    from onyx.serve.logs import configure_logging
    from onyx.train import evaluate as ev

    configure_logging("warning")
    try:
        predictor = ev.load_predictor(model_path)
        evaluation = ev.evaluate_folder(predictor, data_dir, batch_size)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    written = ev.write_outputs(evaluation, predictor, out)
    if explain:
        from onyx.train.explain_gallery import write_explanations

        try:
            written += write_explanations(model_path, predictor, evaluation, explain, out)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(ev.summary(evaluation.report))
    click.echo("wrote " + ", ".join(str(p) for p in written))
