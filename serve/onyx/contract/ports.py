"""Where a server listens unless told otherwise: the one place clients, the probe and the
server's configuration take their default ports from."""

from __future__ import annotations

DEFAULT_PORT = 50051
# The gRPC port's neighbour, and no well-known service's: 9090 is Prometheus's own, 8002
# Triton's metrics, 9100-9999 the Prometheus exporters' allocated range.
DEFAULT_METRICS_PORT = 50052
