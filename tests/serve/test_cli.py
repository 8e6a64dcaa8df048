"""`onyx serve` options: generated from ServerConfig, each with an ONYX_ variable, and resolved
with command line > environment > --config file > default (the server itself is tested over real
channels elsewhere)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from onyx import cli as root_cli
from onyx.cli import main
from onyx.serve import cli
from onyx.serve.config import DEFAULT_METRICS_PORT, InputLimits, ServerConfig, TlsConfig
from onyx.settings.options import field_specs


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """The configs `onyx serve` would run, instead of running them."""
    configs: list[ServerConfig] = []

    async def fake_serve(config: ServerConfig) -> None:
        configs.append(config)

    monkeypatch.setattr(cli, "run_server", fake_serve)
    return configs


def serve(args: list[str], env: Mapping[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["serve", *args], env=dict(env or {}))


def test_help_shows_an_env_var_and_the_default_for_every_option() -> None:
    output = serve(["--help"]).output
    flat = " ".join(output.split())
    options = [p for p in cli.serve_command.params if isinstance(p, click.Option)]
    names = {p.opts[0] for p in options}
    assert {f"--{s.name}" for s in field_specs(ServerConfig)} <= names
    for option in options:
        if option.name == "help":
            continue
        assert option.show_envvar and isinstance(option.envvar, str), option.name
        assert option.envvar == "ONYX_" + option.opts[0][2:].upper().replace("-", "_")
        assert option.envvar in output, option.envvar
    assert f"default: {DEFAULT_METRICS_PORT}" in flat and "default: 50051" in flat
    assert "command line, its environment variable (env var: ...), the --config TOML file" in flat


def test_nothing_given_serves_the_dataclass_defaults_and_metrics_on_the_default_port(
    served: list[ServerConfig],
) -> None:
    assert serve([]).exit_code == 0
    assert served == [ServerConfig(metrics_port=DEFAULT_METRICS_PORT)]


def test_command_line_beats_env_beats_file(tmp_path: Path, served: list[ServerConfig]) -> None:
    file = tmp_path / "serve.toml"
    file.write_text('port = 1111\nhost = "127.0.0.1"\n[limits]\nmax_text_chars = 50\n')
    env = {"ONYX_PORT": "2222", "ONYX_CONFIG": str(file), "ONYX_DEVICE": "cpu"}
    assert serve(["--port", "3333"], env).exit_code == 0
    assert serve([], env).exit_code == 0
    assert serve([], {"ONYX_CONFIG": str(file)}).exit_code == 0
    assert [c.port for c in served] == [3333, 2222, 1111]
    assert served[0].host == "127.0.0.1" and served[0].device == "cpu"
    assert served[0].limits == dataclasses.replace(InputLimits(), max_text_chars=50)


def test_old_flag_names_still_work(served: list[ServerConfig]) -> None:
    result = serve(["--grace", "60", "--max-inputs", "4", "--load-model", "pets",
                    "--model-control", "explicit", "-r", "repo", "-p", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (config,) = served
    assert (config.grace_s, config.limits.max_inputs_per_request) == (60.0, 4)
    assert (config.startup_models, config.repository, config.port) == (("pets",), Path("repo"), 0)


def test_load_model_may_be_repeated(served: list[ServerConfig]) -> None:
    args = ["--model-control", "explicit", "--load-model", "a", "--startup-models", "b,c"]
    assert serve(args).exit_code == 0
    assert serve(["--load-model", "a", "--load-model", "b"]).exit_code == 0
    assert [c.startup_models for c in served] == [("a", "b", "c"), ("a", "b")]


def test_poll_interval_implies_poll_and_conflicts_with_explicit(served: list[ServerConfig]) -> None:
    assert serve(["--poll-interval-s", "2"]).exit_code == 0
    assert serve([], {"ONYX_POLL_INTERVAL_S": "3"}).exit_code == 0
    assert serve(["--model-control", "explicit"]).exit_code == 0
    assert [(c.model_control, c.poll_interval_s) for c in served] == [
        ("poll", 2.0), ("poll", 3.0), ("explicit", ServerConfig.poll_interval_s)
    ]  # fmt: skip
    result = serve(["--model-control", "explicit", "--poll-interval", "2"])
    assert result.exit_code == 2 and "needs --model-control poll" in result.output


def test_a_poll_interval_yields_to_a_model_control_given_at_a_higher_level(
    tmp_path: Path, served: list[ServerConfig]
) -> None:
    polling = tmp_path / "polling.toml"
    polling.write_text('model_control = "poll"\npoll_interval_s = 10\n')
    # The file's interval does not stand in the way of a control given more directly.
    assert serve(["--config", str(polling), "--model-control", "explicit"]).exit_code == 0
    assert serve(["--config", str(polling)], {"ONYX_MODEL_CONTROL": "none"}).exit_code == 0
    interval_only = tmp_path / "interval.toml"
    interval_only.write_text("poll_interval_s = 10\n")
    assert serve(["--config", str(interval_only), "--model-control", "none"]).exit_code == 0
    # An interval given more directly than the file's control wins: it polls.
    not_polling = tmp_path / "none.toml"
    not_polling.write_text('model_control = "none"\n')
    assert serve(["--config", str(not_polling), "--poll-interval-s", "3"]).exit_code == 0
    assert serve(["--config", str(not_polling)], {"ONYX_POLL_INTERVAL_S": "4"}).exit_code == 0
    assert [(c.model_control, c.poll_interval_s) for c in served] == [
        ("explicit", 10.0), ("none", 10.0), ("none", 10.0), ("poll", 3.0), ("poll", 4.0)
    ]  # fmt: skip
    # At one level the two must agree, as on the command line.
    both = tmp_path / "both.toml"
    both.write_text('model_control = "explicit"\npoll_interval_s = 10\n')
    result = serve(["--config", str(both)])
    assert result.exit_code == 2 and "needs --model-control poll" in result.output
    env = {"ONYX_MODEL_CONTROL": "none", "ONYX_POLL_INTERVAL_S": "2"}
    result = serve([], env)
    assert result.exit_code == 2 and "needs --model-control poll" in result.output


def test_no_metrics_serves_no_endpoint(served: list[ServerConfig]) -> None:
    assert serve(["--no-metrics"]).exit_code == 0
    assert serve(["--metrics-port", "none"]).exit_code == 0
    assert [(c.metrics, c.metrics_port) for c in served] == [(False, None), (True, None)]


def test_tls_options_go_together(tmp_path: Path, served: list[ServerConfig]) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    assert serve(["--tls-cert", str(cert), "--tls-key", str(key)]).exit_code == 0
    assert served[0].tls == TlsConfig(cert=cert, key=key)
    result = serve(["--tls-cert", str(cert)])
    assert result.exit_code == 2 and "missing --tls-key" in result.output
    result = serve(["--tls-client-ca", str(cert)])
    assert result.exit_code == 2 and "missing --tls-cert" in result.output
    result = serve(["--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(key)])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_the_config_file_shown_in_help_is_valid(tmp_path: Path, served: list[ServerConfig]) -> None:
    lines = serve(["--help"]).output.split("A --config file")[1].split("\n\n")[0].splitlines()[1:]
    file = tmp_path / "serve.toml"
    file.write_text("\n".join(line.strip() for line in lines) + "\n")
    result = serve(["--config", str(file)])
    assert result.exit_code == 0, result.output
    assert served[0].model_control == "poll" and served[0].limits.max_image_pixels == 20_000_000


class FakeEntryPoint:
    """An `onyx.commands` entry point whose loading gives `loaded` or raises it."""

    def __init__(self, name: str, loaded: object) -> None:
        self.name, self.value, self._loaded = name, f"fake_plugin:{name}", loaded

    def load(self) -> object:
        if isinstance(self._loaded, Exception):
            raise self._loaded
        return self._loaded


def test_a_plugin_that_fails_to_load_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = click.Command("good", callback=lambda: None)
    plugins = [FakeEntryPoint("train", ImportError("No module named 'torch'")),
               FakeEntryPoint("odd", "not a command"), FakeEntryPoint("good", good)]  # fmt: skip
    monkeypatch.setattr(
        root_cli, "entry_points", lambda group: plugins if group == root_cli.COMMANDS_GROUP else []
    )
    group = click.Group("onyx", commands=[cli.serve_command])
    with caplog.at_level(logging.WARNING, logger=root_cli.__name__):
        root_cli._add_plugins(group)
    assert sorted(group.commands) == ["good", "serve"]
    assert "'train' command: plugin fake_plugin:train failed to load" in caplog.text
    assert "ImportError: No module named 'torch'" in caplog.text
    assert "'odd' command: plugin fake_plugin:odd" in caplog.text
