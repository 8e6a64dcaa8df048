"""The floor Python gRPC sets before any model runs: a unary echo of an N-byte request.

    python bench/grpc_floor.py                 # 602,112 bytes: one 3x224x224 float32 tensor
    python bench/grpc_floor.py --bytes 35000   # a typical JPEG

Client and server share one process and event loop (grpc.aio), the handler does nothing. What
`onyx bench` reports above raw ONNX Runtime at one client can be compared with this floor.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
import numpy as np


async def _echo(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
    return b"ok"


async def measure(size: int, rounds: int) -> float:
    """Median round trip in milliseconds."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("e.E", {"M": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    payload = b"x" * size
    latencies = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/e.E/M")
        for index in range(rounds + 50):
            started = time.perf_counter()
            await call(payload)
            if index >= 50:  # after warm-up: connection and flow-control windows settled
                latencies.append(time.perf_counter() - started)
    await server.stop(0)
    return float(np.median(latencies) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=3 * 224 * 224 * 4)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    median_ms = asyncio.run(measure(args.bytes, args.rounds))
    print(f"grpc.aio unary echo of {args.bytes} bytes: p50 {median_ms:.3f} ms")


if __name__ == "__main__":
    main()
