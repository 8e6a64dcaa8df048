"""Serving commands: `onyx serve`, `onyx classify`. Parse, validate, delegate."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import click
import grpc

from onyx.serve.bulk import BulkJob, classify_folder
from onyx.serve.client import Client, as_json_records, format_table
from onyx.serve.config import DEFAULT_PORT, ServerConfig
from onyx.serve.options import ConfigCommand, Given, config_options, given_fields, precedence_epilog
from onyx.serve.server import ListenError
from onyx.serve.server import serve as run_server

SERVE_EPILOG = f"""\b
Examples:
  onyx serve --repository models --port 50051 --model-control poll
  ONYX_PORT=50052 onyx serve --config serve.toml --no-metrics
  onyx serve --model-control explicit --startup-models pets,digits

\b
A --config file (TOML; keys are the option names with _ for -):
  repository = "/srv/models"
  model_control = "poll"
  poll_interval_s = 10
  [limits]
  max_image_pixels = 20_000_000

{precedence_epilog("ONYX")}
"""


@click.command("serve", cls=ConfigCommand, epilog=SERVE_EPILOG)
@config_options(ServerConfig, envvar_prefix="ONYX")
def serve_command(config: ServerConfig) -> None:
    """Serve every model of a repository over gRPC until SIGTERM/SIGINT."""
    from onyx.serve.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    config = resolve_serve_config(config, given_fields(click.get_current_context()))
    try:
        asyncio.run(run_server(config))
    except ListenError as exc:  # a busy port: one line, exit 1, no traceback
        raise click.ClickException(str(exc)) from None


def resolve_serve_config(config: ServerConfig, given: Mapping[str, Given]) -> ServerConfig:
    """What the options imply for each other: a poll interval asks for polling, and
    --no-metrics serves no metrics endpoint.

    `given`: where each field set came from. A poll interval decides the model control only
    where it was given at the same level as --model-control or a higher one (command line >
    environment > file): a file's interval never overrides --model-control explicit."""
    interval, control = given.get("poll_interval_s"), given.get("model_control")
    if interval is not None and (control is None or interval > control):
        config = replace(config, model_control="poll")
    elif interval is not None and interval == control and config.model_control != "poll":
        raise click.BadParameter(
            f"--poll-interval-s needs --model-control poll, not {config.model_control}",
            param_hint="--poll-interval-s",
        )
    if not config.metrics:
        config = replace(config, metrics_port=None)
    return config


@click.command("classify")
@click.argument("files", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "-m", required=True, help="Model name in the server's repository.")
@click.option(
    "--text", "-t", "texts", multiple=True, help="Text to classify (text models); repeatable."
)
@click.option(
    "--version",
    "-v",
    "model_version",
    type=click.IntRange(0),
    default=0,
    help="Model version (0: newest ready).",
)
@click.option(
    "--top-k", "-k", type=click.IntRange(1), default=3, show_default=True, help="Classes per input."
)
@click.option(
    "--server",
    "-s",
    default=f"localhost:{DEFAULT_PORT}",
    show_default=True,
    envvar="ONYX_SERVER",
    show_envvar=True,
    help="host:port of an Onyx server.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="For a folder: results file, .csv or .jsonl.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="For a folder: requests in flight at once.",
)
@click.option("--resume", is_flag=True, help="For a folder: skip files already in --out.")
@click.option(
    "--explain",
    is_flag=True,
    help="Also show what decided each prediction: image overlays (PNG, in --out-dir), or the "
    "text with its words coloured (spans with --json).",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("overlays"),
    show_default=True,
    help="With --explain: where the image overlays go.",
)
def classify_command(
    files: tuple[Path, ...],
    model: str,
    texts: tuple[str, ...],
    model_version: int,
    top_k: int,
    server: str,
    as_json: bool,
    out: Path | None,
    concurrency: int,
    resume: bool,
    explain: bool,
    out_dir: Path,
) -> None:
    """Classify image FILES, a folder of images, or --text strings with a model on a server.

    \b
    Examples:
      onyx classify --model digits samples/*.png                 # a table
      onyx classify photos/ --model pets --out labels.csv        # a folder, recursively
      onyx classify photos/ --model pets --out labels.csv --resume
      onyx classify --model pets --explain photo.jpg --out-dir overlays/
    """
    if explain and any(f.is_dir() for f in files):
        raise click.UsageError("--explain takes image files or --text, not a folder")
    if len(files) == 1 and files[0].is_dir():
        if out is None:
            raise click.UsageError("classifying a folder needs --out labels.csv (or .jsonl)")
        job = BulkJob(files[0], model, out, top_k, model_version, concurrency, resume)
        _classify_folder(server, job)
        return
    if any(f.is_dir() for f in files):
        raise click.UsageError("give one folder, or image files, not both")
    if not files and not texts:
        raise click.UsageError("give image FILES, a folder, or at least one --text")
    if files and texts:
        raise click.UsageError("give either image FILES or --text, not both")
    if explain:
        from onyx.serve.explain_cli import classify_explained

        try:
            classify_explained(server, model, files, texts, top_k, model_version, as_json, out_dir)
        except grpc.RpcError as exc:
            raise _rpc_error(exc) from exc
        return
    with Client(server) as client:
        try:
            if files:
                names = [str(f) for f in files]
                response = client.classify_images(model, files, top_k, model_version)
            else:
                names = list(texts)
                response = client.classify_texts(model, texts, top_k, model_version)
        except grpc.RpcError as exc:
            raise _rpc_error(exc) from exc
    if as_json:
        json.dump(as_json_records(names, response), sys.stdout, indent=2)
        click.echo()
    else:
        click.echo(format_table(names, response))


def _rpc_error(exc: grpc.RpcError) -> click.ClickException:
    return click.ClickException(f"{exc.code().name}: {exc.details()}")


def _classify_folder(server: str, job: BulkJob) -> None:
    with grpc.insecure_channel(server) as channel:
        try:
            summary = classify_folder(channel, job)
        except grpc.RpcError as exc:
            raise _rpc_error(exc) from exc
    click.echo(
        f"{summary.classified} classified, {summary.skipped} already done, "
        f"{len(summary.failed)} failed -> {job.out}"
    )
    for path, why in summary.failed:
        click.echo(f"  failed: {path}: {why}", err=True)
