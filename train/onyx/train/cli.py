"""Training-side commands: `onyx train image|text`, `onyx export`, `onyx demo`.

torch is imported only when one of these runs, so the serving install (no torch) can still list
them and says how to get the `train` extra when one is used.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

TRAIN_EXTRA_HINT = "this command needs torch: pip install ./train"


def require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(TRAIN_EXTRA_HINT) from exc


@click.group("train")
def train_group() -> None:
    """Train a classifier (a checkpoint and its resolved config land in --out)."""


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "-n", required=True, help="Model name in the repository.")
@click.option(
    "--repository",
    "-r",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("models"),
    show_default=True,
    envvar="ONYX_REPOSITORY",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Largest batch the server forms for this model.",
)
@click.option(
    "--max-queue-delay-us",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="How long a lone request may wait for others to batch with. 0 suits most models: "
    "while a batch runs, new requests queue and form the next batch anyway.",
)
@click.option(
    "--atol",
    type=click.FloatRange(0),
    default=1e-4,
    show_default=True,
    help="Parity tolerance on logits (plus rtol 1e-3).",
)
def export_command(
    checkpoint: Path,
    name: str,
    repository: Path,
    max_batch_size: int,
    max_queue_delay_us: int,
    atol: float,
) -> None:
    """Export CHECKPOINT to ONNX, check ONNX Runtime against torch, publish as the next version.

    Example: onyx export runs/digits/best.pt --name digits
    """
    require_torch()
    from onyx.serve.logs import configure_logging
    from onyx.train.export import ExportConfig, ParityError, export_checkpoint

    configure_logging("info")
    export = ExportConfig(
        checkpoint=checkpoint,
        name=name,
        repository=repository,
        atol=atol,
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
    )
    with tempfile.TemporaryDirectory(prefix="onyx-export-") as work:
        try:
            result = export_checkpoint(export, Path(work))
        except ParityError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"published {name} version {result.version}: {result.model_path} "
        f"(max |onnx - torch| {result.max_abs_diff:.2g})"
    )


@click.command("demo")
@click.option(
    "--repository",
    "-r",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("models"),
    show_default=True,
    help="Where the trained model is published.",
)
@click.option("--epochs", type=click.IntRange(1), default=8, show_default=True)
def demo_command(repository: Path, epochs: int) -> None:
    """Run the whole path on bundled data: train, export, serve, classify.

    Trains a small CNN on scikit-learn's handwritten digits, publishes it as `digits`, trains a
    sentiment LSTM on generated reviews, publishes it as `sentiment`, serves both over gRPC and
    classifies held-out digits and a few sentences. Afterwards `onyx serve` serves them again.
    """
    require_torch()
    from onyx.serve.logs import configure_logging
    from onyx.train.demo import run_demo

    configure_logging("info")
    result = run_demo(repository, epochs=epochs)
    click.echo(
        f"\ndigits v{result.version}: validation accuracy {result.val_accuracy:.3f}, "
        f"held-out accuracy over gRPC {result.heldout_accuracy:.3f} ({result.heldout} images)"
    )
    click.echo(
        f"sentiment v{result.sentiment_version}: validation accuracy "
        f"{result.sentiment_val_accuracy:.3f}"
    )
    click.echo(f"serve it again with: onyx serve --repository {repository}")
