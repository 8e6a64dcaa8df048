"""A/B of server code: `onyx serve` from different checkouts on one model, side by side.

    git worktree add --detach /tmp/before 9f1eccc
    python bench/ab_checkouts.py before=/tmp/before now=. naive=naive -c 1,8,32 --reps 4
    python bench/ab_checkouts.py now=. "two=.:--intra-op-threads 2" --model digits -c 1,32

Each SPEC is NAME=CHECKOUT[:EXTRA ARGS] (the server runs with CHECKOUT/serve and CHECKOUT/train
first on its path, so a worktree of another commit serves its own code) or NAME=naive
(bench/naive_server.py). Every server starts once on the same model file; the Python load
generator of small_models.py then visits them in rotating order, repetition by repetition, so
background load hits all alike. Printed per server and concurrency, medians over repetitions:
requests/s, p50, and CPU per request from /proc: the whole server process, its event-loop thread
(the main thread) apart, and this client process. CPU per request is the steadier figure on a
shared machine; throughput is only comparable inside one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the checkout root, for the bench package
    sys.path.insert(0, str(ROOT))

from bench.small_models import (  # noqa: E402
    SETTLE_S,
    Workload,
    closed_loop,
    made_workload,
    running,
)


@dataclass(frozen=True)
class Sample:
    rate: float
    p50_ms: float
    server_ms: float  # server CPU ms per request
    loop_ms: float  # of which its main (event-loop) thread
    client_ms: float  # this process's CPU ms per request


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (or one of its threads) so far."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def started(spec: str, workload: Workload, log: Path) -> Iterator[tuple[str, int]]:
    """Start the server a SPEC names; yields (address, pid)."""
    checkout, _, extra = spec.partition("=")[2].partition(":")
    server = "naive" if checkout == "naive" else "onyx"
    root = ROOT if server == "naive" else Path(checkout).resolve()
    with running(server, workload, log, root, extra.split()) as address_and_pid:
        yield address_and_pid


def measure(address: str, pid: int, payloads: list[bytes], clients: int, seconds: float) -> Sample:
    server, loop, mine = cpu_seconds(pid), cpu_seconds(pid, pid), own_cpu_seconds()
    load = asyncio.run(closed_loop(address, payloads, clients, 4, seconds))
    requests = max(1.0, load.rate * seconds)
    return Sample(
        load.rate,
        load.p50_ms,
        (cpu_seconds(pid) - server) / requests * 1e3,
        (cpu_seconds(pid, pid) - loop) / requests * 1e3,
        (own_cpu_seconds() - mine) / requests * 1e3,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", help="NAME=CHECKOUT[:ARGS] or NAME=naive")
    parser.add_argument("--model", default="text", help="text, digits or resnet18")
    parser.add_argument("--concurrency", "-c", default="1")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.5, help="per block")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    samples: dict[tuple[str, int], list[Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="onyx-ab-") as tmp, contextlib.ExitStack() as stack:
        workload = made_workload(args.model, Path(tmp), 256)
        payloads = workload.requests()  # serialized once, sent by every block
        servers = {
            spec.partition("=")[0]: stack.enter_context(
                started(spec, workload, Path(tmp) / f"{spec.partition('=')[0]}.log")
            )
            for spec in args.specs
        }
        names = list(servers)
        for rep in range(args.reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                for clients in levels:
                    address, pid = servers[name]
                    sample = measure(address, pid, payloads, clients, args.seconds)
                    samples.setdefault((name, clients), []).append(sample)
                    time.sleep(SETTLE_S)
    print(f"{args.model}: {args.reps} reps of {args.seconds} s; load average {os.getloadavg()}")
    print("server      c  requests/s   p50 ms   CPU ms/request: server (loop)  client")
    for (name, clients), runs in sorted(samples.items(), key=lambda item: item[0][::-1]):
        med = {f: statistics.median(getattr(s, f) for s in runs) for f in Sample.__annotations__}
        cpu = f"{med['server_ms']:21.3f} ({med['loop_ms']:.3f}) {med['client_ms']:7.3f}"
        print(f"{name:<10} {clients:>2} {med['rate']:11.0f} {med['p50_ms']:8.2f}  {cpu}")


if __name__ == "__main__":
    main()
