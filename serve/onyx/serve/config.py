"""The server's configuration: dataclasses that `onyx serve` turns into its options.

Each field's metadata carries its --help text and section (`group`); `onyx.serve.options`
generates one option per field, with an `ONYX_<NAME>` environment variable, so a name, type or
default is written here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from onyx.serve.inputs import InputLimits
from onyx.serve.repository import ModelControl
from onyx.serve.runtime import Device

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9090
LogLevel = Literal["debug", "info", "warning", "error"]

_LISTEN, _MODELS, _RUNTIME, _METRICS = "Listening", "Models", "Runtime", "Metrics and logs"


def _field(default: Any, help: str, group: str, **meta: Any) -> Any:  # noqa: A002
    return field(default=default, metadata={"help": help, "group": group, **meta})


@dataclass(frozen=True)
class TlsConfig:
    cert: Path = field(metadata={"help": "PEM certificate chain; serve TLS only.", "exists": True})
    key: Path = field(metadata={"help": "PEM private key of --tls-cert.", "exists": True})
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca: Path | None = field(
        default=None,
        metadata={"help": "PEM CA; clients must present a certificate it signed.", "exists": True},
    )


@dataclass(frozen=True)
class ServerConfig:
    repository: Path = _field(
        Path("models"), "Model repository: <name>/config.pbtxt, <name>/<version>/model.onnx.",
        _MODELS, aliases=("-r",),
    )  # fmt: skip
    # "[::]" listens on every interface; tests use "127.0.0.1" and port 0 (any free port).
    host: str = _field("[::]", "Interface to listen on ([::]: all).", _LISTEN)
    port: int = _field(
        DEFAULT_PORT, "gRPC port (0: any free port).", _LISTEN, aliases=("-p",), min=0, max=65535
    )
    device: Device = _field(
        "auto", "auto uses CUDA when a GPU and driver are present, else CPU.", _RUNTIME
    )
    intra_op_threads: int = _field(
        0, "ONNX Runtime threads per session (0: the cores divided among instances).", _RUNTIME,
        min=0,
    )  # fmt: skip
    instances: int = _field(
        0, "ONNX Runtime sessions per model version for every model (0: each config's).",
        _RUNTIME, min=0,
    )  # fmt: skip
    preprocess_threads: int = _field(
        0, "Threads decoding and resizing images (0: one per core).", _RUNTIME, min=0
    )
    max_message_bytes: int = _field(
        64 * 1024 * 1024, "Largest gRPC message accepted or sent.", _LISTEN, min=1024
    )
    limits: InputLimits = field(default_factory=InputLimits, metadata={"group": "Input limits"})
    default_max_queue_size: int = _field(
        1024, "Queued inputs per model version when its config sets no max_queue_size.",
        _MODELS, min=1,
    )  # fmt: skip
    grace_s: float = _field(
        10.0, "Seconds in-flight requests get to finish on SIGTERM.", _LISTEN,
        aliases=("--grace",), min=0,
    )  # fmt: skip
    model_control: ModelControl = _field(
        "none", "none: load at start; poll: follow the repository (implied by "
        "--poll-interval-s); explicit: RepositoryModelLoad/Unload.", _MODELS,
    )  # fmt: skip
    poll_interval_s: float = _field(
        5.0, "Seconds between repository polls (set: implies --model-control poll).", _MODELS,
        aliases=("--poll-interval",), min=0, min_open=True,
    )  # fmt: skip
    startup_models: tuple[str, ...] = _field(
        (), "With --model-control explicit: models to load at start, comma-separated ('*': all).",
        _MODELS, aliases=("--load-model",),
    )  # fmt: skip
    stream_window: int = _field(
        64, "Requests of one ClassifyStream in flight at once (more wait unread).", _LISTEN, min=1
    )
    tls: TlsConfig | None = field(default=None, metadata={"prefix": "tls", "group": "TLS"})
    metrics: bool = _field(True, "Record metrics at all (off only to measure their cost).", _METRICS)
    # The library serves no HTTP unless asked (tests, embedded servers); `onyx serve` does.
    metrics_port: int | None = _field(
        None, "Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; none: "
        "not served).", _METRICS, min=0, max=65535, cli_default=DEFAULT_METRICS_PORT,
    )  # fmt: skip
    # Applied by `onyx serve`; the library leaves logging to its caller.
    log_level: LogLevel = _field("info", "Logging threshold.", _METRICS)
