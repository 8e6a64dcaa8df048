"""Serving commands: `onyx serve`, `onyx classify`, `onyx models`. Parse, validate, delegate."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
import grpc

from onyx.serve.bulk import BulkJob, classify_folder
from onyx.serve.client import Client, as_json_records, format_table
from onyx.serve.config import DEFAULT_METRICS_PORT, DEFAULT_PORT, ServerConfig, TlsConfig
from onyx.serve.inputs import InputLimits
from onyx.serve.repository import MODEL_CONTROLS, ModelControl
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
    help="Model repository: <name>/config.pbtxt, <name>/<version>/{model.onnx,model.pbtxt}.",
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
    "--instances",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    envvar="ONYX_INSTANCES",
    help="ONNX Runtime sessions per model version for every model (0: each config's instances).",
)
@click.option(
    "--max-message-bytes",
    type=click.IntRange(1024),
    default=ServerConfig.max_message_bytes,
    show_default=True,
    help="Largest gRPC message accepted or sent.",
)
@click.option(
    "--model-control",
    type=click.Choice(MODEL_CONTROLS),
    default=None,
    help="none: load at start; poll: follow the repository (implied by --poll-interval); "
    "explicit: RepositoryModelLoad/Unload.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Seconds between repository polls (implies --model-control poll).",
)
@click.option(
    "--load-model",
    "load_models",
    multiple=True,
    help="With --model-control explicit: a model to load at start ('*': all); repeatable.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate chain; serve TLS only.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM CA; clients must present a certificate it signed.",
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
    instances: int,
    max_message_bytes: int,
    model_control: str | None,
    poll_interval: float | None,
    load_models: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    metrics_port: int,
    metrics: bool,
    log_level: str,
) -> None:
    """Serve every model of a repository over gRPC until SIGTERM/SIGINT.

    Example: onyx serve --repository models --port 50051 --poll-interval 5
    """
    from onyx.serve.logs import configure_logging

    configure_logging(log_level)
    control = resolve_model_control(model_control, poll_interval)
    config = ServerConfig(
        repository=repository,
        host=host,
        port=port,
        device=device,  # type: ignore[arg-type]
        intra_op_threads=intra_op_threads,
        grace_s=grace,
        instances=instances,
        max_message_bytes=max_message_bytes,
        limits=InputLimits(max_inputs, max_image_pixels, max_text_chars),
        model_control=control,
        poll_interval_s=poll_interval or ServerConfig.poll_interval_s,
        startup_models=load_models,
        tls=resolve_tls(tls_cert, tls_key, tls_client_ca),
        metrics=metrics,
        metrics_port=metrics_port if metrics else None,
    )
    asyncio.run(run_server(config))


def resolve_model_control(model_control: str | None, poll_interval: float | None) -> ModelControl:
    if poll_interval is not None and model_control not in (None, "poll"):
        raise click.BadParameter(
            f"--poll-interval needs --model-control poll, not {model_control}",
            param_hint="--poll-interval",
        )
    if model_control is None:
        return "poll" if poll_interval is not None else "none"
    return model_control  # type: ignore[return-value]


def resolve_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsConfig | None:
    if (cert is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        if client_ca is not None:
            raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    return TlsConfig(cert=cert, key=key, client_ca=client_ca)


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
) -> None:
    """Classify image FILES, a folder of images, or --text strings with a model on a server.

    \b
    Examples:
      onyx classify --model digits samples/*.png                 # a table
      onyx classify photos/ --model pets --out labels.csv        # a folder, recursively
      onyx classify photos/ --model pets --out labels.csv --resume
    """
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
