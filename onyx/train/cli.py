"""Training-side commands: `onyx train image|text`, `onyx export`, `onyx demo`.

torch is imported only when one of these runs, so the serving install (no torch) can still list
them and says how to get the `train` extra when one is used.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from onyx.train.text_cli import train_text_command

TRAIN_EXTRA_HINT = "this command needs the training extra: pip install 'onyx[train]'"


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(TRAIN_EXTRA_HINT) from exc


@click.group("train")
def train_group() -> None:
    """Train a classifier (a checkpoint and its resolved config land in --out)."""


@train_group.command("image")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("runs/image"),
    show_default=True,
    help="Where best.pt, config.json and metrics.json go.",
)
@click.option(
    "--model",
    default="small_cnn",
    show_default=True,
    help="Architecture (see the registry in onyx.train.models).",
)
@click.option(
    "--image-size",
    type=click.IntRange(8),
    default=32,
    show_default=True,
    help="Square input size in pixels.",
)
@click.option("--grayscale/--rgb", default=False, help="Colour mode of the network input.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(0, min_open=True),
    default=1e-3,
    show_default=True,
    help="AdamW learning rate.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of each class held out, when DATA_DIR has no train/ and val/.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning"]),
    default="info",
    show_default=True,
)
def train_image_command(
    data_dir: Path,
    out: Path,
    model: str,
    image_size: int,
    grayscale: bool,
    epochs: int,
    batch_size: int,
    lr: float,
    val_fraction: float,
    seed: int,
    device: str,
    log_level: str,
) -> None:
    """Train an image classifier on DATA_DIR (one sub-folder of images per class).

    Example: onyx train image data/digits --grayscale --image-size 32 --out runs/digits
    """
    _require_torch()
    from onyx.logs import configure_logging
    from onyx.train.config import ImageTrainConfig
    from onyx.train.engine import fit
    from onyx.train.models import list_models

    configure_logging(log_level)
    if model not in list_models():
        raise click.BadParameter(f"choose one of: {', '.join(list_models())}", param_hint="--model")
    config = ImageTrainConfig(
        data_dir=str(data_dir),
        out_dir=str(out),
        model=model,
        image_size=image_size,
        color_mode="grayscale" if grayscale else "rgb",
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        val_fraction=val_fraction,
        seed=seed,
        device=device,
    )
    try:
        result = fit(config)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"best val accuracy {result.best_accuracy:.4f}; checkpoint {result.best_checkpoint}")


train_group.add_command(train_text_command)


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
    default=1000,
    show_default=True,
    help="How long a request may wait for others to batch with.",
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
    _require_torch()
    from onyx.logs import configure_logging
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
    _require_torch()
    from onyx.logs import configure_logging
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
