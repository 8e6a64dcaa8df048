"""The floor Python gRPC sets before any model runs: a unary call of an N-byte request.

    python bench/grpc_floor.py                      # 602,112 bytes: one 3x224x224 float32 tensor
    python bench/grpc_floor.py --bytes 35000        # a typical JPEG
    python bench/grpc_floor.py --busy-ms 22         # the handler keeps a thread busy 22 ms first

The server runs in its own process (as `onyx serve` does) and answers "ok"; with `--busy-ms` it
first spins a worker thread for that long, standing in for ResNet18 on this machine, so the
processes go idle and come back between requests as they do under a real model. Reported: the
median round trip, minus the busy time. What `onyx bench` reports above raw ONNX Runtime at one
client can be compared with this floor.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import grpc
import numpy as np

from onyx.bench.runner import free_port, wait_listening

METHOD = "/e.E/M"


def _spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


async def serve(port: int, busy_s: float) -> None:
    async def answer(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        if busy_s:
            await asyncio.get_running_loop().run_in_executor(None, _spin, busy_s)
        return b"ok"

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    handler = grpc.unary_unary_rpc_method_handler(answer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("e.E", {"M": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def measure(address: str, size: int, rounds: int) -> list[float]:
    payload = b"x" * size
    latencies = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)
        for index in range(rounds + 50):
            started = time.perf_counter()
            await call(payload)
            if index >= 50:  # after warm-up: connection and flow-control windows settled
                latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=3 * 224 * 224 * 4)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--busy-ms", type=float, default=0.0)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.busy_ms / 1e3))
        return
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port), "--busy-ms", str(args.busy_ms)]
    server = subprocess.Popen(command)
    try:
        wait_listening(f"127.0.0.1:{port}", server)
        latencies = asyncio.run(measure(f"127.0.0.1:{port}", args.bytes, args.rounds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    overhead_ms = float(np.median(latencies) * 1e3) - args.busy_ms
    print(
        f"grpc.aio unary call of {args.bytes} bytes, server busy {args.busy_ms:g} ms: "
        f"p50 round trip beyond the busy time {overhead_ms:.3f} ms"
    )


if __name__ == "__main__":
    main()
