"""Serving commands: `onyx serve`, `onyx classify`, `onyx models`. Parse, validate, delegate."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
import grpc

from onyx.serve.client import Client, as_json_records, format_table
from onyx.serve.config import DEFAULT_METRICS_PORT, DEFAULT_PORT, ServerConfig
from onyx.serve.inputs import InputLimits
from onyx.serve.server import serve as run_server

DEFAULT_REPOSITORY = Path("models")


@click.command("serve")
@click.option(
    "--repository",
    "-r",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_REPOSITORY,
    show_default=True,
    envvar="ONYX_REPOSITORY",
    help="Model repository: <name>/config.pbtxt, <name>/<version>/model.onnx.",
)
@click.option(
    "--host", default="[::]", show_default=True, envvar="ONYX_HOST", help="Interface to listen on."
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar="ONYX_PORT",
    help="gRPC port (0: any free port).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "cpu"]),
    default="auto",
    show_default=True,
    envvar="ONYX_DEVICE",
    help="auto uses CUDA when a GPU and driver are present, else CPU.",
)
@click.option(
    "--intra-op-threads",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="ONNX Runtime threads per session (0: cores / instances).",
)
@click.option(
    "--max-inputs",
    type=click.IntRange(1),
    default=InputLimits.max_inputs_per_request,
    show_default=True,
    help="Most inputs in one Classify request.",
)
@click.option(
    "--max-image-pixels",
    type=click.IntRange(1),
    default=InputLimits.max_image_pixels,
    show_default=True,
    help="Larger images are refused before decoding (decompression-bomb guard).",
)
@click.option(
    "--max-text-chars",
    type=click.IntRange(1),
    default=InputLimits.max_text_chars,
    show_default=True,
    help="Longest text input accepted.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds in-flight requests get to finish on SIGTERM.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    envvar="ONYX_METRICS_PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port).",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Record metrics at all (off only to measure their cost).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve_command(
    repository: Path,
    host: str,
    port: int,
    device: str,
    intra_op_threads: int,
    max_inputs: int,
    max_image_pixels: int,
    max_text_chars: int,
    grace: float,
    metrics_port: int,
    metrics: bool,
    log_level: str,
) -> None:
    """Serve every model of a repository over gRPC until SIGTERM/SIGINT.

    Example: onyx serve --repository models --port 50051
    """
    from onyx.logs import configure_logging

    configure_logging(log_level)
    config = ServerConfig(
        repository=repository,
        host=host,
        port=port,
        device=device,  # type: ignore[arg-type]
        intra_op_threads=intra_op_threads,
        grace_s=grace,
        limits=InputLimits(max_inputs, max_image_pixels, max_text_chars),
        metrics=metrics,
        metrics_port=metrics_port if metrics else None,
    )
    asyncio.run(run_server(config))


@click.command("classify")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
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
    help="host:port of an Onyx server.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
def classify_command(
    files: tuple[Path, ...],
    model: str,
    texts: tuple[str, ...],
    model_version: int,
    top_k: int,
    server: str,
    as_json: bool,
) -> None:
    """Classify image FILES (or --text strings) with a model on a running server.

    Example: onyx classify --model digits samples/*.png
    """
    if not files and not texts:
        raise click.UsageError("give image FILES or at least one --text")
    if files and texts:
        raise click.UsageError("give either image FILES or --text, not both")
    with Client(server) as client:
        try:
            if files:
                names = [str(f) for f in files]
                response = client.classify_images(model, files, top_k, model_version)
            else:
                names = list(texts)
                response = client.classify_texts(model, texts, top_k, model_version)
        except grpc.RpcError as exc:
            raise click.ClickException(f"{exc.code().name}: {exc.details()}") from exc
    if as_json:
        json.dump(as_json_records(names, response), sys.stdout, indent=2)
        click.echo()
    else:
        click.echo(format_table(names, response))
