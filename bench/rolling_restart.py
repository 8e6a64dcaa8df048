"""Scaling rehearsal: a rolling restart of 3 replicas under load, counting failed requests.

    python bench/rolling_restart.py -r bench/models -m resnet18
    python bench/rolling_restart.py --tiny                 # a tiny test model (needs onnx)
    python bench/rolling_restart.py --tiny --replicas 3 --clients 8 --settle-s 3

What Kubernetes does to a Deployment, on loopback: N `onyx serve` processes on their own ports,
one client channel over all of them (target `ipv4:127.0.0.1:p1,127.0.0.1:p2,...`, the
round_robin policy, client-side health checking on the overall health entry, as a `dns:///`
headless-Service target would be), `--clients` threads calling Classify back to back. Then,
one replica at a time: SIGTERM (the server drains: NOT_SERVING at once, keeps accepting for
--drain-delay when it has that option, finishes what it received within --grace, exits),
start it again on the same port, wait until it serves, let the load settle, next. Printed:
requests, failed requests by status code (the target is 0), and each replica's exit code, drain
time and time back to serving. Exit status 1 when any request failed or a replica exited non-zero.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from onyx.bench.runner import free_port, wait_listening
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc

ROOT = Path(__file__).resolve().parent.parent
# Round robin over every address, and client-side health checking: a draining replica (health
# NOT_SERVING) leaves the rotation before it stops accepting.
SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)


@dataclass
class Tally:
    """Outcomes of the load threads, shared under a lock."""

    ok: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: grpc.StatusCode | None) -> None:
        with self.lock:
            if code is None:
                self.ok += 1
            else:
                self.failed[code.name] += 1


@dataclass
class Restart:
    replica: int
    exit_code: int
    drained_s: float  # SIGTERM to exit
    back_s: float  # restart to serving again


class Replica:
    """One `onyx serve` process on a fixed loopback port, restartable."""

    def __init__(self, repository: Path, port: int, flags: list[str]) -> None:
        self.port, self.address = port, f"127.0.0.1:{port}"
        self.command = [sys.executable, "-m", "onyx", "serve", "--repository", str(repository),
                        "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
                        "--log-level", "warning", *flags]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start and wait until it accepts calls; returns the seconds that took."""
        started = time.monotonic()
        self.process = subprocess.Popen(self.command)
        wait_listening(self.address, self.process)
        return time.monotonic() - started

    def terminate(self, timeout_s: float) -> tuple[int, float]:
        """SIGTERM and wait for the exit; returns (exit code, seconds)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def drain_flags(drain_delay_s: float, grace_s: float) -> list[str]:
    """--grace, and --drain-delay when this `onyx serve` has it."""
    help_text = subprocess.run([sys.executable, "-m", "onyx", "serve", "--help"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    flags = [f"--grace={grace_s}"]
    if "--drain-delay" in help_text:
        flags.append(f"--drain-delay={drain_delay_s}")
    return flags


def round_robin_target(replicas: list[Replica]) -> str:
    return "ipv4:" + ",".join(r.address for r in replicas)


def load(target: str, request: api.ClassifyRequest, tally: Tally, stop: threading.Event) -> None:
    """Call Classify back to back until `stop`, counting outcomes."""
    options = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = api_grpc.ClassifierStub(channel)
        while not stop.is_set():
            try:
                stub.Classify(request, timeout=30)
                tally.add(None)
            except grpc.RpcError as exc:
                tally.add(exc.code())


def png(size: int = 64) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def rehearse(args: argparse.Namespace, repository: Path) -> tuple[Tally, list[Restart]]:
    flags = drain_flags(args.drain_delay_s, args.grace_s)
    replicas = [Replica(repository, free_port(), flags) for _ in range(args.replicas)]
    tally, stop, restarts = Tally(), threading.Event(), []
    request = api.ClassifyRequest(model=args.model, inputs=[api.Input(image=png())])
    target = round_robin_target(replicas)
    threads = [threading.Thread(target=load, args=(target, request, tally, stop))
               for _ in range(args.clients)]  # fmt: skip
    try:
        for replica in replicas:
            replica.start()
        for thread in threads:
            thread.start()
        time.sleep(args.settle_s)
        for index, replica in enumerate(replicas):
            code, drained_s = replica.terminate(args.drain_delay_s + args.grace_s + 30)
            back_s = replica.start()
            restarts.append(Restart(index, code, drained_s, back_s))
            time.sleep(args.settle_s)  # the channel finds the new process and spreads load again
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for replica in replicas:
            with contextlib.suppress(subprocess.TimeoutExpired):
                if replica.process is not None and replica.process.poll() is None:
                    replica.terminate(args.drain_delay_s + args.grace_s + 30)
            replica.kill()
    return tally, restarts


def report(args: argparse.Namespace, tally: Tally, restarts: list[Restart]) -> str:
    failed = sum(tally.failed.values())
    lines = [
        f"rolling restart of {args.replicas} replicas under load ({args.clients} clients, "
        f"round robin, drain delay {args.drain_delay_s:g} s, grace {args.grace_s:g} s)",
        f"requests: {tally.ok + failed}   failed: {failed}"
        + (f"   by code: {dict(tally.failed)}" if failed else ""),
    ]
    for r in restarts:
        lines.append(
            f"  replica {r.replica}: SIGTERM -> exit {r.exit_code} in {r.drained_s:.1f} s, "
            f"serving again {r.back_s:.1f} s after restart"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def tiny_repository() -> Iterator[tuple[Path, str]]:
    """The serving tests' tiny image model in a temporary repository."""
    sys.path.insert(0, str(ROOT))  # tests/ lives in the checkout, not in an installed package
    from tests.serve.tiny_models import write_image_model

    with tempfile.TemporaryDirectory() as directory:
        write_image_model(Path(directory), "tiny")
        yield Path(directory), "tiny"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-r", "--repository", type=Path, help="model repository to serve")
    parser.add_argument("-m", "--model", default="resnet18", help="model to call")
    parser.add_argument("--tiny", action="store_true", help="serve the tests' tiny image model")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8, help="threads calling back to back")
    parser.add_argument("--settle-s", type=float, default=3.0,
                        help="seconds of load before the first restart and after each")  # fmt: skip
    parser.add_argument("--drain-delay-s", type=float, default=1.0)
    parser.add_argument("--grace-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not args.tiny and args.repository is None:
        parser.error("give --repository (and --model), or --tiny")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        repository = args.repository
        if args.tiny:
            repository, args.model = stack.enter_context(tiny_repository())
        tally, restarts = rehearse(args, repository)
    print(report(args, tally, restarts))
    clean = not tally.failed and all(r.exit_code == 0 for r in restarts)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
