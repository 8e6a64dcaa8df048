"""`onyx classify`: ask a running server about image files, a folder, a text file or texts.
Parse, validate, delegate to the client library."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import grpc

from onyx.client.bulk import BulkJob, classify_source
from onyx.client.channels import ChannelOptions, open_channel
from onyx.client.classifier import Client, as_json_records, format_table
from onyx.client.sources import SourceError, is_text_file
from onyx.contract.ports import DEFAULT_PORT


def tls_path(name: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A client's --tls-ca/--tls-cert/--tls-key option (also from ONYX_CLIENT_TLS_*)."""
    return click.option(
        f"--tls-{name}",
        f"tls_{name}",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar=f"ONYX_CLIENT_TLS_{name.upper()}",
        show_envvar=True,
        help=what,
    )


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
    help="Model version (0: newest ready that is not a faster variant).",
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
    help="host:port of an Onyx server, or dns:///host:port to spread calls over every "
    "address the name resolves to (round robin).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (JSON Lines for a folder or file)."
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="For a folder or text file: results file, .csv or .jsonl (default: stdout).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="For a folder or text file: requests in flight at once.",
)
@click.option("--resume", is_flag=True, help="For a folder or text file: skip what --out has.")
@click.option(
    "--text-column",
    default="text",
    show_default=True,
    help="For a .csv/.tsv/.jsonl file: the column or key holding the text.",
)
@tls_path("ca", "PEM CA certificate of the server; turns TLS on (default roots without it).")
@tls_path("cert", "PEM client certificate, for servers that require one (mutual TLS).")
@tls_path("key", "PEM private key of --tls-cert.")
@click.option(
    "--explain",
    is_flag=True,
    help="Also show what decided each prediction: image overlays (PNG, in --out-dir), or the "
    "text with its words coloured (spans with --json). Image files or --text only.",
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
    text_column: str,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    explain: bool,
    out_dir: Path,
) -> None:
    """Classify image FILES, a folder of images, a text file (.csv, .tsv, .jsonl or .txt:
    one text per row or line) or --text strings with a model on a server.

    A folder or a text file goes over one stream, with results written as they arrive: to
    --out (resumable with --resume), else to stdout as a table (JSON Lines with --json).
    Answers refused with RESOURCE_EXHAUSTED or UNAVAILABLE are retried with backoff; the exit
    status is 1 when any item failed.

    \b
    Examples:
      onyx classify --model digits samples/*.png                 # a table
      onyx classify photos/ --model pets                         # a folder, to stdout
      onyx classify photos/ --model pets --out labels.csv --resume
      onyx classify reviews.csv --model sentiment --out results.csv
      onyx classify photos/ -m pets -s dns:///onyx.internal:50051 --tls-ca ca.pem
      onyx classify --model pets --explain photo.jpg --out-dir overlays/
    """
    if resume and out is None:
        raise click.UsageError("--resume skips what --out holds: give --out")
    try:
        channel = open_channel(server, ChannelOptions(tls_ca, tls_cert, tls_key))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    with channel:
        if len(files) == 1 and (files[0].is_dir() or is_text_file(files[0])):
            if texts:
                raise click.UsageError("give either a folder or text file, or --text, not both")
            if explain:
                raise click.UsageError("--explain takes image files or --text, not a folder")
            job = BulkJob(files[0], model, out, top_k, model_version, concurrency, resume,
                          progress=sys.stderr.isatty(), text_column=text_column,
                          stream_format="jsonl" if as_json else "table")  # fmt: skip
            _classify_many(channel, job)
            return
        client = Client("", channel=channel)
        if explain:
            _classify_explained(client, files, texts, model, top_k, model_version, as_json, out_dir)
        else:
            _classify_few(client, files, texts, model, top_k, model_version, as_json)


def _classify_few(
    client: Client,
    files: tuple[Path, ...],
    texts: tuple[str, ...],
    model: str,
    top_k: int,
    model_version: int,
    as_json: bool,
) -> None:
    """Image FILES or --text strings: one Classify call, a table or JSON."""
    _check_few(files, texts)
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


def _classify_explained(
    client: Client,
    files: tuple[Path, ...],
    texts: tuple[str, ...],
    model: str,
    top_k: int,
    model_version: int,
    as_json: bool,
    out_dir: Path,
) -> None:
    """--explain: predictions with what decided them (overlays, coloured words)."""
    from onyx.client.explanations import classify_explained

    _check_few(files, texts)
    try:
        classify_explained(client, model, files, texts, top_k, model_version, as_json, out_dir)
    except grpc.RpcError as exc:
        raise _rpc_error(exc) from exc


def _check_few(files: tuple[Path, ...], texts: tuple[str, ...]) -> None:
    if any(f.is_dir() or is_text_file(f) for f in files):
        raise click.UsageError("give one folder or text file, or image files, not a mix")
    if not files and not texts:
        raise click.UsageError(
            "give image FILES, a folder, or at least one --text (or one .csv/.tsv/.jsonl/.txt)"
        )
    if files and texts:
        raise click.UsageError("give either image FILES or --text, not both")


def _rpc_error(exc: grpc.RpcError) -> click.ClickException:
    return click.ClickException(f"{exc.code().name}: {exc.details()}")


def _classify_many(channel: grpc.Channel, job: BulkJob) -> None:
    try:
        summary = classify_source(channel, job, sys.stdout if job.out is None else None)
    except grpc.RpcError as exc:
        raise _rpc_error(exc) from exc
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc
    retried = f", {summary.retried} retried" if summary.retried else ""
    click.echo(
        f"{summary.classified} classified, {summary.skipped} already done, "
        f"{len(summary.failed)} failed{retried} -> {job.out or 'stdout'}",
        err=job.out is None,  # stdout holds the records
    )
    for key, why in summary.failed:
        click.echo(f"  failed: {key}: {why}", err=True)
    if summary.failed:
        click.get_current_context().exit(1)
