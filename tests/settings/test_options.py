"""`onyx.settings.options`: dataclass -> click options, --config TOML, environment, precedence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click
import pytest
from click.testing import CliRunner, Result

from onyx.settings.options import (
    ConfigCommand,
    config_options,
    explicit_fields,
    field_specs,
    precedence_epilog,
)


@dataclass(frozen=True)
class Inner:
    depth: int = field(default=3, metadata={"help": "How deep.", "min": 1})
    name: str = "x"


@dataclass(frozen=True)
class Secret:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Example:
    size: int = field(
        default=8, metadata={"help": "Items per batch.", "aliases": ("-s",), "min": 1}
    )
    rate: float = 0.5
    label: str = "cat"
    mode: Literal["fast", "slow"] = "fast"
    verbose: bool = False
    amp: bool = True
    out: Path = Path("out")
    mean: tuple[float, ...] = (0.5, 0.25)
    tags: list[str] = field(default_factory=list)
    limit: int | None = None
    port: int | None = field(default=None, metadata={"cli_default": 9090})
    inner: Inner = field(default_factory=lambda: Inner(depth=4))
    secret: Secret | None = field(default=None, metadata={"prefix": "secret", "group": "Keys"})


class Runner:
    """Invokes a command built from Example and keeps what it received."""

    def __init__(self, prefix: str | None = None) -> None:
        self.configs: list[Example] = []
        self.explicit: frozenset[str] = frozenset()

        @click.command(cls=ConfigCommand, epilog=precedence_epilog(prefix))
        @config_options(Example, envvar_prefix=prefix)
        def command(config: Example) -> None:
            self.configs.append(config)
            self.explicit = explicit_fields(click.get_current_context())

        self.command = command

    def invoke(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        return CliRunner().invoke(self.command, list(args), env=dict(env or {}))

    def config(self, *args: str, env: Mapping[str, str] | None = None) -> Example:
        result = self.invoke(*args, env=env)
        assert result.exit_code == 0, result.output
        return self.configs[-1]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_nothing_given_is_the_dataclass_default_except_cli_default() -> None:
    config = Runner().config()
    assert config == Example(port=9090)
    assert config.inner == Inner(depth=4)  # the parent's default instance, not Inner()


def test_every_type_converts() -> None:
    config = Runner().config(
        "-s", "3", "--rate", "2", "--label", "dog", "--mode", "slow", "--verbose", "--no-amp",
        "--out", "o", "--mean", "0.1, 0.2,0.3", "--tags", "a,b", "--limit", "4", "--depth", "5",
        "--name", "y", "--port", "none",
    )  # fmt: skip
    assert config == Example(
        size=3, rate=2.0, label="dog", mode="slow", verbose=True, amp=False, out=Path("o"),
        mean=(0.1, 0.2, 0.3), tags=["a", "b"], limit=4, port=None, inner=Inner(5, "y"),
    )  # fmt: skip
    assert isinstance(config.mean, tuple) and isinstance(config.tags, list)
    assert Runner().config("--mean", "").mean == ()


def test_a_list_option_may_be_repeated_its_values_joined() -> None:
    runner = Runner("EX")
    config = runner.config("--mean", "1", "--mean", "2,3", "--tags", "a", "--tags", "b,c")
    assert (config.mean, config.tags) == ((1.0, 2.0, 3.0), ["a", "b", "c"])
    assert runner.config("--tags", "", "--tags", "a").tags == ["a"]
    # The environment variable stays one comma-separated list (spaces inside are kept).
    assert runner.config(env={"EX_TAGS": "a b, c"}).tags == ["a b", "c"]


def test_one_nested_option_keeps_the_parents_other_defaults() -> None:
    assert Runner().config("--name", "z").inner == Inner(depth=4, name="z")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "medium"], "'medium' is not one of 'fast', 'slow'"),
        (["--size", "0"], "x>=1"),
        (["--rate", "fast"], "'fast' is not a valid float"),
        (["--mean", "0.1,x"], "'x' is not a valid float"),
    ],
)
def test_bad_values_are_usage_errors(args: list[str], message: str) -> None:
    result = Runner().invoke(*args)
    assert result.exit_code == 2 and message in result.output


def test_optional_nested_dataclass_is_none_until_one_of_its_options_is_set() -> None:
    assert Runner().config().secret is None
    config = Runner().config("--secret-cert", "c.pem", "--secret-key", "k.pem")
    assert config.secret == Secret(Path("c.pem"), Path("k.pem"))
    result = Runner().invoke("--secret-cert", "c.pem")
    assert result.exit_code == 2
    assert "missing --secret-key (or secret.key in the --config file)" in result.output


def test_toml_file_values_and_command_line_overrides(tmp_path: Path) -> None:
    file = write(
        tmp_path / "c.toml",
        'size = 5\nmode = "slow"\ntags = ["x", "y"]\nverbose = true\n[inner]\ndepth = 7\n'
        '[secret]\ncert = "c.pem"\nkey = "k.pem"\n',
    )
    runner = Runner()
    config = runner.config("--config", file)
    assert (config.size, config.mode, config.tags, config.verbose) == (5, "slow", ["x", "y"], True)
    assert config.inner == Inner(depth=7, name="x") and config.secret is not None
    assert runner.explicit >= {"size", "inner.depth", "secret.cert"}
    assert "rate" not in runner.explicit
    config = runner.config("--config", file, "--size", "6", "--no-verbose")
    assert (config.size, config.verbose, config.inner.depth) == (6, False, 7)


def test_a_file_value_equal_to_the_default_still_beats_nothing(tmp_path: Path) -> None:
    # and an option given with the default's value still beats the file
    file = write(tmp_path / "c.toml", "size = 5\n")
    assert Runner().config("--config", file, "--size", "8").size == 8


def test_unknown_key_names_it_and_lists_the_valid_ones(tmp_path: Path) -> None:
    result = Runner().invoke("--config", write(tmp_path / "c.toml", "sise = 5\n"))
    assert result.exit_code == 2
    assert "unknown key 'sise'" in result.output
    assert "amp, inner, label, limit, mean, mode, out, port, rate, secret, size" in result.output
    result = Runner().invoke("--config", write(tmp_path / "d.toml", "[inner]\ndeep = 1\n"))
    assert result.exit_code == 2
    assert "unknown key 'inner.deep'" in result.output and "depth, name" in result.output


def test_bad_file_values_are_errors_naming_the_file(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", 'mode = "medium"\n')
    result = Runner().invoke("--config", file)
    assert result.exit_code == 2 and "'medium' is not one of" in result.output
    assert "c.toml" in result.output
    result = Runner().invoke("--config", write(tmp_path / "d.toml", "inner = 3\n"))
    assert result.exit_code == 2 and "'inner' must be a [table]" in result.output
    result = Runner().invoke("--config", write(tmp_path / "e.toml", "size = \n"))
    assert result.exit_code == 2 and "e.toml" in result.output
    for text, key in [("[size]\nvalue = 3\n", "size"), ("[inner.depth]\nv = 1\n", "inner.depth"),
                      ("port = { value = 1 }\n", "port")]:  # fmt: skip
        result = Runner().invoke("--config", write(tmp_path / "f.toml", text))
        assert result.exit_code == 2, text
        assert f"{key!r} takes a value, not a [table]" in result.output


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    result = Runner().invoke("--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_precedence_command_line_then_env_then_file_then_default(tmp_path: Path) -> None:
    runner = Runner("EX")
    file = write(tmp_path / "c.toml", "size = 5\nrate = 0.75\n")
    assert runner.config().size == 8
    assert runner.config("--config", file).size == 5
    assert runner.config("--config", file, env={"EX_SIZE": "4"}).size == 4
    assert runner.config("--config", file, "-s", "3", env={"EX_SIZE": "4"}).size == 3
    assert runner.config(env={"EX_CONFIG": file}).rate == 0.75
    config = runner.config(env={"EX_VERBOSE": "1", "EX_TAGS": "a,b", "EX_MODE": "slow"})
    assert (config.verbose, config.tags, config.mode) == (True, ["a", "b"], "slow")
    assert runner.config(env={"EX_SECRET_CERT": "c", "EX_SECRET_KEY": "k"}).secret is not None


def test_help_shows_help_defaults_env_vars_and_sections() -> None:
    output = Runner("EX").invoke("--help").output
    assert "Items per batch." in output and "-s, --size INTEGER RANGE" in output
    defaults = ["8", "0.5", "fast", "out", "0.5,0.25", "9090", "4", "no-verbose"]
    for shown in [f"default: {d}" for d in defaults]:
        assert shown in output, shown
    for shown in ["[fast|slow]", "EX_SIZE", "EX_SECRET_CERT", "EX_CONFIG", "FLOAT,...",
                  "(required with this section)"]:  # fmt: skip
        assert shown in output, shown
    assert output.index("Inner ([inner] in a --config file):") < output.index("Keys ([secret]")
    assert output.index("Keys ([secret]") < output.index("Other options:")
    assert "first wins: the command line, its environment variable" in " ".join(output.split())
    assert "EX_" not in Runner().invoke("--help").output


def test_specs_name_every_leaf_field_once() -> None:
    names = [s.name for s in field_specs(Example)]
    assert names[:3] == ["size", "rate", "label"]
    assert {"depth", "name", "secret-cert", "secret-key"} <= set(names)
    assert len(names) == len(set(names)) == 15
    assert "size" not in [s.name for s in field_specs(Example, exclude=["size"])]


def test_colliding_flattened_names_and_unknown_types_are_refused() -> None:
    @dataclass
    class Clash:
        depth: int = 1
        inner: Inner = field(default_factory=Inner)

    with pytest.raises(ValueError, match=r"depth and inner\.depth"):
        field_specs(Clash)

    @dataclass
    class Odd:
        table: dict[str, int] = field(default_factory=dict)

    with pytest.raises(TypeError, match="no option for the type"):
        config_options(Odd)
    with pytest.raises(ValueError, match="no fields"):
        config_options(Example, extra={"nope": {"aliases": ("-n",)}})


def test_fields_taken_from_arguments() -> None:
    @dataclass
    class Job:
        data: str
        epochs: int = 1

    seen: list[Job] = []

    @click.command(cls=ConfigCommand)
    @click.argument("data")
    @config_options(Job, arguments=["data"], extra={"epochs": {"aliases": ("-e",)}})
    def command(config: Job) -> None:
        seen.append(config)

    result = CliRunner().invoke(command, ["d", "-e", "3"])
    assert result.exit_code == 0, result.output
    assert seen == [Job("d", 3)]


def test_a_default_is_not_checked_until_used(tmp_path: Path) -> None:
    @dataclass
    class Keys:
        key: Path = field(default=Path("no-such.pem"), metadata={"exists": True})

    seen: list[Keys] = []

    @click.command(cls=ConfigCommand)
    @config_options(Keys)
    def command(config: Keys) -> None:
        seen.append(config)

    assert CliRunner().invoke(command, []).exit_code == 0
    assert seen == [Keys()]
    result = CliRunner().invoke(command, ["--key", str(tmp_path / "none.pem")])
    assert result.exit_code == 2 and "does not exist" in result.output
