"""`onyx bench`: measure a server under load, beside raw ONNX Runtime on the same model."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import click

from onyx.bench.baseline import BaselineResult, measure, newest_model_file
from onyx.bench.load import RunResult
from onyx.bench.report import Round, as_json, as_table, median_over_rounds, median_table
from onyx.bench.runner import BenchConfig, build_input, model_sample, run_levels, spawned_server
from onyx.client.channels import ChannelOptions, open_channel
from onyx.client.classifier import Client
from onyx.client.cli import tls_path


def _numbers(text: str, kind: type[int] | type[float]) -> tuple[float, ...]:
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from exc


@contextlib.contextmanager
def _target(
    server: str | None,
    repository: Path | None,
    serve_args: tuple[str, ...],
    metrics_url: str | None,
) -> Iterator[tuple[str, str | None]]:
    if server is not None:
        yield server, metrics_url
        return
    if repository is None:
        raise click.UsageError("give --server HOST:PORT, or --repository to start a server")
    with spawned_server(repository, serve_args) as (address, url):
        yield address, metrics_url or url


@click.command("bench")
@click.option("--model", "-m", required=True, help="Model to load.")
@click.option(
    "--server",
    "-s",
    envvar="ONYX_SERVER",
    show_envvar=True,
    help="host:port of a running server (else --repository starts one); dns:///host:port "
    "spreads the load round robin over every address the name resolves to.",
)
@click.option(
    "--repository",
    "-r",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="ONYX_REPOSITORY",
    show_envvar=True,
    help="Start `onyx serve` on this repository in its own process (and find the model "
    "file there for --baseline).",
)
@click.option(
    "--concurrency",
    "-c",
    default="1,4,16",
    show_default=True,
    help="Closed-loop client counts, comma-separated.",
)
@click.option("--rate", default="", help="Open-loop request rates per second, comma-separated.")
@click.option(
    "--duration",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds per load level.",
)
@click.option(
    "--max-requests",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Requests per load level at most.",
)
@click.option("--inputs-per-request", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Send this image file (default: a random preprocessed tensor).",
)
@click.option("--text", help="Send this text (text models).")
@click.option(
    "--baseline/--no-baseline",
    default=False,
    help="Also measure raw ONNX Runtime in-process on the same model and report ratios.",
)
@click.option(
    "--baseline-batches",
    default="1,2,4,8,16",
    show_default=True,
    help="Batch sizes for the baseline.",
)
@click.option(
    "--metrics-url", help="Scrape the server's /metrics here for its queue/compute split."
)
@click.option(
    "--serve-arg",
    multiple=True,
    help="Extra argument for the started server, e.g. --serve-arg=--no-metrics.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Repeat the load levels (and the baseline after them) this many times and report the "
    "median of each round's own ratios: on a shared machine one round can be 10 % off.",
)
@click.option("--json", "as_json_output", is_flag=True, help="Print JSON instead of a table.")
@tls_path("ca", "PEM CA certificate of --server; turns TLS on (default roots without it).")
@tls_path("cert", "PEM client certificate, for servers that require one (mutual TLS).")
@tls_path("key", "PEM private key of --tls-cert.")
def bench_command(
    model: str, server: str | None, repository: Path | None, concurrency: str, rate: str,
    duration: float, max_requests: int, inputs_per_request: int, image: Path | None,
    text: str | None, baseline: bool, baseline_batches: str, metrics_url: str | None,
    serve_arg: tuple[str, ...], rounds: int, as_json_output: bool, tls_ca: Path | None,
    tls_cert: Path | None, tls_key: Path | None,
) -> None:  # fmt: skip
    """Load a server with Classify requests and report throughput and latency percentiles.

    \b
    Example (ResNet18, tensor input, against raw ONNX Runtime in the same run):
      onyx bench -r bench/models -m resnet18 -c 1,2,4,8,16,64 --baseline
    """
    levels = tuple(int(c) for c in _numbers(concurrency, int))
    if baseline and repository is None:
        raise click.UsageError("--baseline needs --repository to find the model file")
    try:
        model_file = newest_model_file(repository, model) if baseline and repository else None
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    batches = [int(b) for b in _numbers(baseline_batches, int)]
    try:
        channel = ChannelOptions(tls_ca, tls_cert, tls_key, max_attempts=1)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    results: list[Round] = []
    with _target(server, repository, serve_arg, metrics_url) as (address, url):
        config = BenchConfig(
            server=address, model=model, concurrency=levels, rates=_numbers(rate, float),
            duration_s=duration, max_requests=max_requests, inputs_per_request=inputs_per_request,
            image=image, text=text, metrics_url=url, channel=channel,
        )  # fmt: skip
        with open_channel(address, channel) as opened:
            client = Client(address, channel=opened)
            client.wait_ready(60)
            model_config = client.get_model(model).config
        single = build_input(config, model_config)
        sample = model_sample(single, model_config, model_file.parent) if model_file else None
        for _ in range(rounds):
            runs: list[RunResult] = run_levels(config, single)
            raw: list[BaselineResult] = []
            if model_file is not None and sample is not None:
                raw = measure(model_file, sample, batches, min(duration, 5.0))
            results.append((runs, raw))
    _report(results, as_json_output)


def _report(results: list[Round], as_json_output: bool) -> None:
    if as_json_output:
        if len(results) == 1:
            click.echo(json.dumps(as_json(*results[0]), indent=2))
        else:
            rounds = [as_json(runs, raw) for runs, raw in results]
            median = median_over_rounds(results)
            click.echo(json.dumps({"rounds": rounds, "median": median}, indent=2))
        return
    for index, (runs, raw) in enumerate(results):
        if len(results) > 1:
            click.echo(f"\nround {index + 1} of {len(results)}")
        click.echo(as_table(runs, raw))
    if len(results) > 1:
        click.echo("\n" + median_table(median_over_rounds(results)))
