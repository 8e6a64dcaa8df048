"""`onyx export`: a checkpoint to ONNX, parity-checked, published as the next version.

Its options come from `onyx.train.export.ExportConfig`, whose module imports torch, so the
command is built on first use (`LazyCommand`). The resolved options land in the published
version's export.json, beside model.onnx.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from onyx.settings.options import ConfigCommand, config_options, precedence_epilog
from onyx.train.commands.lazy import LazyCommand

EXPORT_HELP = "Export CHECKPOINT (or --pretrained MODEL) to ONNX, parity-check it, publish it."
PRETRAINED_HELP = (
    "Publish this registry model's ImageNet classifier as is (1000 labels, its weights' "
    "preprocessing) instead of a CHECKPOINT; weights must be available offline."
)
EXPORT_EPILOG = f"""\b
Examples:
  onyx export runs/digits/best.pt --name digits
  onyx export runs/pets/best.pt -n pets --max-batch-size 32 --repository /srv/models
  onyx export --pretrained efficientnet_lite0 --name lite0   # the ImageNet classifier as is
  onyx export runs/pets/best.pt -n pets --variant int8       # + an int8 version, if accurate

{precedence_epilog()} --repository also comes from ONYX_REPOSITORY (before the file).
"""


def build_export_command() -> click.Command:
    from onyx.train.export import ExportConfig, ParityError, export_checkpoint
    from onyx.train.export.gate import VariantRefused
    from onyx.train.export.variants import VariantDataError

    @click.command("export", cls=ConfigCommand, epilog=EXPORT_EPILOG)
    @click.argument(
        "checkpoint",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        required=False,
        callback=lambda _ctx, _param, value: Path() if value is None else value,
    )
    @config_options(
        ExportConfig,
        arguments=["checkpoint"],
        extra={"name": {"aliases": ("-n",), "help": "Model name in the repository."},
               "repository": {"aliases": ("-r",), "envvar": "ONYX_REPOSITORY"},
               "pretrained": {"help": PRETRAINED_HELP}},
    )  # fmt: skip
    def export_command(config: ExportConfig) -> None:
        """Export CHECKPOINT (or --pretrained MODEL) to ONNX, check ONNX Runtime against torch,
        publish it as the next version of --name in --repository (export.json beside it records
        these options)."""
        from onyx.settings.logs import configure_logging

        given = config.checkpoint != Path()
        if given == bool(config.pretrained):
            raise click.UsageError("give a CHECKPOINT or --pretrained MODEL (one of them)")
        configure_logging("info")
        with tempfile.TemporaryDirectory(prefix="onyx-export-") as work:
            try:
                result = export_checkpoint(config, Path(work))
            except (ParityError, VariantRefused, VariantDataError) as exc:
                raise click.ClickException(str(exc)) from exc
        click.echo(
            f"published {config.name} version {result.version}: {result.model_path} "
            f"(max |onnx - torch| {result.max_abs_diff:.2g})"
        )
        if result.gate is not None:
            click.echo(
                f"published {config.name} version {result.variant_version}: the {config.variant} "
                f"variant of version {result.version}; {result.gate.describe()}"
            )

    return export_command


export_command = LazyCommand("export", build_export_command, EXPORT_HELP)
