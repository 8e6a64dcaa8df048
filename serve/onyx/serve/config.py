"""The server's configuration: one dataclass, filled from flags and environment by `onyx serve`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from onyx.serve.inputs import InputLimits
from onyx.serve.repository import ModelControl
from onyx.serve.runtime import Device

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9090


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca: Path | None = None


@dataclass(frozen=True)
class ServerConfig:
    # The model repository to serve.
    repository: Path = Path("models")
    # "[::]" listens on every interface; tests use "127.0.0.1" and port 0 (any free port).
    host: str = "[::]"
    port: int = DEFAULT_PORT
    device: Device = "auto"
    # ONNX Runtime threads per session; 0 divides the cores among each model's instances.
    intra_op_threads: int = 0
    # Sessions per model version for every model (0: each config's `instances`).
    instances: int = 0
    # Threads decoding and resizing images (0: one per core).
    preprocess_threads: int = 0
    # Largest gRPC message accepted or sent.
    max_message_bytes: int = 64 * 1024 * 1024
    limits: InputLimits = field(default_factory=InputLimits)
    # Queued inputs per model version when its config sets no max_queue_size.
    default_max_queue_size: int = 1024
    # Seconds in-flight requests get to finish on shutdown.
    grace_s: float = 10.0
    # none: models load at start; poll: the repository is re-read every poll_interval_s;
    # explicit: only `startup_models` load at start, the rest by RepositoryModelLoad.
    model_control: ModelControl = "none"
    poll_interval_s: float = 5.0
    startup_models: tuple[str, ...] = ()
    # Requests of one ClassifyStream in flight at once (more wait unread: flow control).
    stream_window: int = 64
    tls: TlsConfig | None = None
    # Record Prometheus metrics (off only to measure what they cost).
    metrics: bool = True
    # Serve GET /metrics on this port (0: any free port; None: not served over HTTP).
    metrics_port: int | None = None
