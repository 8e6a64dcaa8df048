"""`onyx demo`: the seeds' workflow on real photos shipped with installed packages."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--repository",
    "-r",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("models"),
    show_default=True,
    envvar="ONYX_REPOSITORY",
    show_envvar=True,
    help="Where the trained models are published.",
)
@click.option(
    "--epochs",
    type=click.IntRange(2),
    default=3,
    show_default=True,
    help="Epochs of each photo run (the pretrained one: 1 head-only, the rest all layers).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port the demo's gRPC server listens on while it classifies (0: any free port).",
)
def demo_command(repository: Path, epochs: int, port: int) -> None:
    """Run the whole path on real photos: fine-tune, compare, export, serve, classify.

    Builds a 6-class photo set from photos that ship with scikit-image, scikit-learn and
    matplotlib (training crops from one half of each photo, validation crops from the other),
    fine-tunes the pretrained EfficientNet-Lite0 (head first, then all layers), trains the same
    network from scratch beside it and prints both accuracies, exports the fine-tuned one with
    the ONNX parity check and publishes it as `photos`, trains and publishes the `sentiment`
    LSTM, then serves both over gRPC and classifies held-out photos and a few sentences.
    Afterwards `onyx serve` serves them again.
    """
    from onyx.settings.logs import configure_logging
    from onyx.train.demo.workflow import run_demo, summary

    configure_logging("info")
    click.echo(summary(run_demo(repository, epochs=epochs, port=port), repository))
