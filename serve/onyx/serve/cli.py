"""`onyx serve`: parse, validate, delegate to the server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import replace

import click

from onyx.serve.config import ServerConfig
from onyx.serve.server import ListenError
from onyx.serve.server import serve as run_server
from onyx.settings.options import (
    ConfigCommand,
    Given,
    config_options,
    given_fields,
    precedence_epilog,
)

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
    from onyx.settings.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    config = resolve_serve_config(config, given_fields(click.get_current_context()))
    try:
        if config.workers > 1:
            from onyx.serve.workers import serve_workers

            sys.exit(serve_workers(config))
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
    if config.workers > 1 and config.model_control == "explicit":
        # A load or unload request reaches the one worker its connection landed on.
        raise click.BadParameter(
            "--workers > 1 needs --model-control none or poll (each worker loads the "
            "repository itself; an explicit load request would reach one worker only)",
            param_hint="--workers",
        )
    return config
