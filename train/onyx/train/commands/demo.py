"""`onyx demo`: the whole path on bundled data."""

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
@click.option("--epochs", type=click.IntRange(1), default=8, show_default=True)
def demo_command(repository: Path, epochs: int) -> None:
    """Run the whole path on bundled data: train, export, serve, classify.

    Trains a small CNN on scikit-learn's handwritten digits, publishes it as `digits`, trains a
    sentiment LSTM on generated reviews, publishes it as `sentiment`, serves both over gRPC and
    classifies held-out digits and a few sentences. Afterwards `onyx serve` serves them again.
    """
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
