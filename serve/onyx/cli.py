"""The `onyx` command. It comes with `onyx-serve` (serve, classify, bench); the training
commands (train, tune, evaluate, export, data, demo) plug in through the `onyx.commands` entry
points when the `onyx-train` sidecar is installed.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import click

from onyx.bench.cli import bench_command
from onyx.client.cli import classify_command
from onyx.serve import __version__
from onyx.serve.cli import serve_command

COMMANDS_GROUP = "onyx.commands"
TRAIN_HINT = (
    "Training commands (train, tune, evaluate, export, data, demo) come with the training sidecar: "
    "pip install ./train"
)
logger = logging.getLogger(__name__)


class OnyxGroup(click.Group):
    """The root group: built-in serving commands plus whatever plugins registered."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not _plugin_names():
            formatter.write_paragraph()
            formatter.write_text(TRAIN_HINT)
        super().format_epilog(ctx, formatter)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # An unknown command that a missing plugin would provide gets the install hint.
        if (
            args
            and args[0] in {"train", "tune", "evaluate", "export", "data", "demo"}
            and not (self.get_command(ctx, args[0]))
        ):
            raise click.UsageError(f"'onyx {args[0]}' is a training command. {TRAIN_HINT}")
        return super().resolve_command(ctx, args)


def _plugin_names() -> list[str]:
    return [ep.name for ep in entry_points(group=COMMANDS_GROUP)]


def _add_plugins(group: click.Group) -> None:
    """Add each plugin's command; one that fails to load is skipped with a warning, so a broken
    training install never takes `onyx serve` down with it."""
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            command = ep.load()
        except Exception as exc:  # any error of a third party's import: report, keep serving
            logger.warning(
                "skipping the %r command: plugin %s failed to load: %s: %s",
                ep.name, ep.value, type(exc).__name__, exc,
            )  # fmt: skip
            continue
        if not isinstance(command, click.Command):
            logger.warning(
                "skipping the %r command: plugin %s (%s) is not a click command",
                ep.name, ep.value, COMMANDS_GROUP,
            )  # fmt: skip
            continue
        group.add_command(command, ep.name)


@click.group(
    cls=OnyxGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="onyx")
def main() -> None:
    """Onyx: fine-tune classifiers, export them to ONNX, serve them over gRPC.

    \b
    A typical session:
      onyx demo                                   # the whole path on bundled data
      onyx train image data/ --out runs/pets \\
          --model resnet18 --weights imagenet     # fine-tune on a folder of images
      onyx export runs/pets/best.pt --name pets   # to ONNX, parity-checked, into models/
      onyx serve                                  # serve models/ over gRPC on :50051
      onyx classify --model pets photo.jpg        # ask the server
    """


main.add_command(serve_command)
main.add_command(classify_command)
main.add_command(bench_command)
_add_plugins(main)
