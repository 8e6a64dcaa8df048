"""The server's configuration: dataclasses that `onyx serve` turns into its options.

Each field's metadata carries its --help text and section; `onyx.settings.options` generates one
option per field, with an `ONYX_<NAME>` environment variable, so a name, type or default is
written here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from onyx.contract.ports import DEFAULT_METRICS_PORT, DEFAULT_PORT
from onyx.contract.preprocess import DEFAULT_MAX_IMAGE_PIXELS

# Device and IoBinding come from execution's interface, which imports no ONNX Runtime: reading
# the configuration (`onyx serve --help`, tools) never loads it.
from onyx.serve.execution.interface import Device, IoBinding

__all__ = ["DEFAULT_METRICS_PORT", "DEFAULT_PORT"]  # re-exported: the server's defaults
# Inference requests (Classify, ModelInfer) in flight at once before new ones are refused.
DEFAULT_MAX_INFLIGHT = 256
LogLevel = Literal["debug", "info", "warning", "error"]
# text: for a terminal; json: one object per line, for log pipelines (Loki, Elasticsearch...).
LogFormat = Literal["text", "json"]
# none: load at start only; poll: also follow the disk; explicit: load/unload on request.
ModelControl = Literal["none", "poll", "explicit"]

_LISTEN, _MODELS, _RUNTIME, _METRICS = "Listening", "Models", "Runtime", "Metrics and logs"


# What one request may hold (`onyx.serve.inputs` enforces them): `[limits]` in a --config file.
@dataclass(frozen=True)
class InputLimits:
    max_inputs_per_request: int = field(
        default=256,
        metadata={"help": "Most inputs in one Classify request.", "aliases": ("--max-inputs",),
                  "min": 1},
    )  # fmt: skip
    max_image_pixels: int = field(
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metadata={"help": "Larger images are refused before decoding (decompression-bomb "
                  "guard).", "min": 1},
    )  # fmt: skip
    max_text_chars: int = field(
        default=100_000, metadata={"help": "Longest text input accepted.", "min": 1}
    )
    max_request_elements: int = field(
        default=64 * 2**20,
        metadata={"help": "Most tensor elements one request may send (raw tensors, token ids): "
                  "a request never makes the others in its batch pay for its size.", "min": 1},
    )  # fmt: skip


def _meta(help: str, group: str = "", **more: Any) -> dict[str, Any]:
    """A field's --help text and section, and more for `onyx.settings.options`."""
    return {"help": help, **({"group": group} if group else {}), **more}


@dataclass(frozen=True)
class TlsConfig:
    cert: Path = field(metadata=_meta("PEM certificate chain; serve TLS only.", exists=True))
    key: Path = field(metadata=_meta("PEM private key of --tls-cert.", exists=True))
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca: Path | None = field(
        default=None,
        metadata=_meta("PEM CA; clients must present a certificate it signed.", exists=True),
    )


@dataclass(frozen=True)
class ServerConfig:
    repository: Path = field(
        default=Path("models"),
        metadata=_meta(
            "Model repository: <name>/config.pbtxt, <name>/<version>/{model.onnx,model.pbtxt}.",
            _MODELS,
            aliases=("-r",),
        ),
    )
    # "[::]" listens on every interface; tests use "127.0.0.1" and port 0 (any free port).
    host: str = field(
        default="[::]", metadata=_meta("Interface to listen on ([::]: all).", _LISTEN)
    )
    port: int = field(
        default=DEFAULT_PORT,
        metadata=_meta("gRPC port (0: any free port).", _LISTEN, aliases=("-p",), min=0, max=65535),
    )
    reuse_port: bool = field(
        default=False,
        metadata=_meta(
            "Let other processes listen on the same port (SO_REUSEPORT; for several workers). "
            "Off: a busy port is an error.",
            _LISTEN,
        ),
    )
    # Off unless asked (the library, tests, and `onyx serve` alike): a port is opened on purpose.
    http_port: int | None = field(
        default=None,
        metadata=_meta(
            "Serve KServe v2's REST binding (e.g. 8000; 0: any free port; none: not served). "
            "Same models, pipeline and TLS as the gRPC port.",
            _LISTEN,
            min=0,
            max=65535,
        ),
    )
    device: Device = field(
        default="auto",
        metadata=_meta("auto uses CUDA when a GPU and driver are present, else CPU.", _RUNTIME),
    )
    intra_op_threads: int = field(
        default=0,
        metadata=_meta(
            "ONNX Runtime threads per session (0: the cores divided among instances).",
            _RUNTIME,
            min=0,
        ),
    )
    io_binding: IoBinding = field(
        default="auto",
        metadata=_meta(
            "Run batches through an ONNX Runtime IO binding (auto: on CUDA only, where it "
            "saves copies; on the CPU it only adds cost).",
            _RUNTIME,
        ),
    )
    # One Python process answers RPCs on one core's worth of event loop: more cores need more
    # processes (`onyx.serve.workers`).
    workers: int = field(
        default=1,
        metadata=_meta(
            "Server processes sharing the port (SO_REUSEPORT), each with its own sessions and "
            "a share of the cores; worker i serves /metrics on --metrics-port + i.",
            _RUNTIME,
            min=1,
        ),
    )
    instances: int = field(
        default=0,
        metadata=_meta(
            "ONNX Runtime sessions per model version for every model (0: each config's).",
            _RUNTIME,
            min=0,
        ),
    )
    preprocess_threads: int = field(
        default=0,
        metadata=_meta("Threads decoding and resizing images (0: one per core).", _RUNTIME, min=0),
    )
    max_message_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata=_meta("Largest gRPC message accepted or sent.", _LISTEN, min=1024),
    )
    limits: InputLimits = field(default_factory=InputLimits, metadata={"group": "Input limits"})
    default_max_queue_size: int = field(
        default=1024,
        metadata=_meta(
            "Queued inputs per model version when its config sets no max_queue_size.",
            _MODELS,
            min=1,
        ),
    )
    grace_s: float = field(
        default=10.0,
        metadata=_meta(
            "Seconds the requests received get to finish once the server stops accepting.",
            _LISTEN,
            aliases=("--grace",),
            min=0,
        ),
    )
    # Kubernetes removes a terminating pod from its endpoints while it is told SIGTERM: requests
    # keep coming for a few seconds, and must not be refused.
    drain_delay_s: float = field(
        default=0.0,
        metadata=_meta(
            "On SIGTERM: seconds to keep accepting requests, health NOT_SERVING, before "
            "stopping (Kubernetes: a few seconds, e.g. 5).",
            _LISTEN,
            aliases=("--drain-delay",),
            min=0,
        ),
    )
    max_inflight_requests: int = field(
        default=DEFAULT_MAX_INFLIGHT,
        metadata=_meta(
            "Inference requests handled at once; more are refused RESOURCE_EXHAUSTED at once "
            "(0: no bound).",
            _LISTEN,
            min=0,
        ),
    )
    max_inflight_per_model: int = field(
        default=0,
        metadata=_meta(
            "Inference requests one model handles at once; more are refused RESOURCE_EXHAUSTED "
            "(0: only --max-inflight-requests).",
            _LISTEN,
            min=0,
        ),
    )
    # Triton's default: a probe should not route traffic to a server missing a model.
    lenient_readiness: bool = field(
        default=False,
        metadata=_meta(
            "Ready once started, whatever the models (default: ready only when every model "
            "configured to load has a ready version).",
            _MODELS,
        ),
    )
    model_control: ModelControl = field(
        default="none",
        metadata=_meta(
            "none: load at start; poll: follow the repository (implied by --poll-interval-s); "
            "explicit: RepositoryModelLoad/Unload.",
            _MODELS,
        ),
    )
    poll_interval_s: float = field(
        default=5.0,
        metadata=_meta(
            "Seconds between repository polls (set: implies --model-control poll).",
            _MODELS,
            aliases=("--poll-interval",),
            min=0,
            min_open=True,
        ),
    )
    startup_models: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "With --model-control explicit: models to load at start, comma-separated ('*': all).",
            _MODELS,
            aliases=("--load-model",),
        ),
    )
    # Behind an L4 load balancer (a Kubernetes Service) a client's channel sticks to the pod it
    # first reached; a bounded connection age makes clients reconnect (GOAWAY, transparent to
    # them), so new pods get traffic. Minutes, not seconds: each reconnect costs a handshake.
    max_connection_age_s: float = field(
        default=300.0,
        metadata=_meta(
            "Seconds before a client connection is asked to reconnect (GOAWAY), so L4 load "
            "balancing spreads long-lived channels (0: never).",
            _LISTEN,
            aliases=("--max-connection-age",),
            min=0,
        ),
    )
    max_connection_age_grace_s: float = field(
        default=30.0,
        metadata=_meta(
            "Seconds calls on an aged connection get to finish before it is closed.",
            _LISTEN,
            aliases=("--max-connection-age-grace",),
            min=0,
        ),
    )
    stream_window: int = field(
        default=64,
        metadata=_meta(
            "Requests of one ClassifyStream in flight at once (more wait unread: flow control).",
            _LISTEN,
            min=1,
        ),
    )
    tls: TlsConfig | None = field(default=None, metadata={"prefix": "tls", "group": "TLS"})
    metrics: bool = field(
        default=True,
        metadata=_meta("Record metrics at all (off only to measure their cost).", _METRICS),
    )
    # The library serves no HTTP unless asked (tests, embedded servers); `onyx serve` does.
    metrics_port: int | None = field(
        default=None,
        metadata=_meta(
            "Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; none: not "
            "served).",
            _METRICS,
            min=0,
            max=65535,
            cli_default=DEFAULT_METRICS_PORT,
        ),
    )
    metrics_host: str | None = field(
        default=None,
        metadata=_meta("Interface /metrics listens on (none: --host's).", _METRICS),
    )
    metrics_tls: bool = field(
        default=True,
        metadata=_meta(
            "With --tls-cert: serve /metrics over HTTPS with the same certificate, asking for "
            "client certificates signed by --tls-client-ca when it is set.",
            _METRICS,
        ),
    )
    # Applied by `onyx serve`; the library leaves logging to its caller.
    log_level: LogLevel = field(default="info", metadata=_meta("Logging threshold.", _METRICS))
    log_format: LogFormat = field(
        default="text",
        metadata=_meta("text, or json: one JSON object per line (for log pipelines).", _METRICS),
    )
