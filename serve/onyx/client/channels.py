"""Client channels to Onyx servers: TLS, retries and client-side load balancing in one place.

    channel = open_channel("localhost:50051", ChannelOptions())
    channel = open_channel("dns:///onyx.prod:50051", ChannelOptions(tls_ca=Path("ca.pem")))

- Target: anything gRPC resolves: `host:port`, `dns:///host:port` (every address the name
  resolves to), `ipv4:10.0.0.1:50051,10.0.0.2:50051`. The service config asks for `round_robin`,
  so calls spread over every resolved address instead of sticking to the first one (gRPC's
  default, `pick_first`). A single stream stays on one server; new calls rotate.
- TLS: `tls_ca` (the server's CA; without it the system roots) turns TLS on; `tls_cert` and
  `tls_key` (together) present a client certificate to a server that asks for one (mutual TLS,
  `onyx serve --tls-client-ca`). Any of the three asks for TLS.
- Retries: gRPC's own retry policy (the channel's service config) retries calls that fail with
  RESOURCE_EXHAUSTED (the server's queue is full) or UNAVAILABLE (a server restarting or
  draining) with exponential, jittered backoff, before any response has arrived. Errors inside an
  open stream are answers, not call failures: `onyx.client.bulk` retries those items itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

SERVICE = "onyx.v1.Classifier"
RETRYABLE = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")


@dataclass(frozen=True)
class ChannelOptions:
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # gRPC caps attempts at 5 (first try included).
    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a client certificate needs both --tls-cert and --tls-key")
        if not 1 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be in [1, 5], got {self.max_attempts}")

    @property
    def tls(self) -> bool:
        return any(p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key))


def service_config(options: ChannelOptions) -> dict[str, Any]:
    """The channel's service config: round robin, and the retry policy of every Onyx call."""
    method: dict[str, Any] = {"name": [{"service": SERVICE}]}
    if options.max_attempts > 1:
        method["retryPolicy"] = {
            "maxAttempts": options.max_attempts,
            "initialBackoff": f"{options.initial_backoff_s}s",
            "maxBackoff": f"{options.max_backoff_s}s",
            "backoffMultiplier": options.backoff_multiplier,
            "retryableStatusCodes": list(RETRYABLE),
        }
    return {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [method]}


def channel_arguments(options: ChannelOptions) -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", json.dumps(service_config(options))),
        ("grpc.enable_retries", 1),
    ]


def credentials(options: ChannelOptions) -> grpc.ChannelCredentials:
    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path is not None else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(options.tls_ca),
        private_key=read(options.tls_key),
        certificate_chain=read(options.tls_cert),
    )


def open_channel(target: str, options: ChannelOptions | None = None) -> grpc.Channel:
    options = options or ChannelOptions()
    arguments = channel_arguments(options)
    if options.tls:
        return grpc.secure_channel(target, credentials(options), options=arguments)
    return grpc.insecure_channel(target, options=arguments)


def open_aio_channel(target: str, options: ChannelOptions | None = None) -> grpc.aio.Channel:
    """`open_channel` for asyncio callers (benchmarks)."""
    options = options or ChannelOptions()
    arguments = channel_arguments(options)
    if options.tls:
        return grpc.aio.secure_channel(target, credentials(options), options=arguments)
    return grpc.aio.insecure_channel(target, options=arguments)
