"""Issue 13's comparison table, one command: three small models, four servers, two clients.

    python bench/table13.py                  # the table: 3 reps, about 20 minutes on 2 cores
    python bench/table13.py --quick          # smoke run: 1 rep, short windows, a few minutes
    python bench/table13.py --models digits --servers onyx,naive --client python -c digits=1
    python bench/table13.py --out table13.json   # raw samples too

Models, exported and published by onyx.train into a temporary repository each (random weights,
nothing downloaded): `resnet18` (c=1,4,16), `text` (the BiLSTM of bench/small_models.py, one
[1, L] sequence per request, L 16..256; c=1,8,32) and `digits` (a tiny 1x28x28 CNN, RPC-bound;
c=1,8,32), all with max batch 16 and no queue delay. Servers on the same model file, each in
its own process: `onyx`, `onyx-w2` (`--workers 2`), `naive` (bench/naive_server.py) and
`triton` (pytriton; `bench/setup_triton.sh` makes its virtualenv once; without it the table says
"triton: not available (...)"). Clients: `python` (bench/small_models.py's asyncio generator)
and `perf_analyzer` (Triton's C++ one, bench/perf_client.py), both sending the same inputs.

Each repetition measures raw in-process ONNX Runtime first (the best batch over 1/2 threads and
batch 1..16: the ceiling), then every server, client and concurrency for --seconds, the
servers' order rotating between repetitions so that all see the same background load. Printed
(markdown): per model, server, client and concurrency the medians over repetitions of inputs/s,
p50, p99 and of each repetition's own ratios: ÷ raw best, ÷ naive, ÷ triton (same client, same
concurrency, same repetition); then the issue's summary rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the checkout root, for the bench package
    sys.path.insert(0, str(ROOT))

from bench.perf_client import PerfAnalyzer  # noqa: E402
from bench.small_models import (  # noqa: E402
    SETTLE_S,
    TRITON_PYTHON,
    Load,
    Workload,
    closed_loop,
    made_workload,
    raw_best,
    started,
)

LEVELS = {"resnet18": (1, 4, 16), "text": (1, 8, 32), "digits": (1, 8, 32)}
SERVERS = ("onyx", "onyx-w2", "naive", "triton")
CLIENTS = ("python", "perf_analyzer")
MISSING = "-"  # a summary cell whose server or client did not run


@dataclass(frozen=True)
class Sample:
    model: str
    rep: int
    server: str
    client: str
    concurrency: int
    rate: float  # inputs/s
    p50_ms: float
    p99_ms: float
    raw_best: float  # this repetition's in-process ceiling, inputs/s


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    raw: dict[str, list[str]] = field(default_factory=dict)  # model: best trial per rep
    unavailable: dict[str, str] = field(default_factory=dict)  # server or client: why

    def by_rep(self, model: str, server: str, client: str, c: int) -> dict[int, Sample]:
        """One cell of the table: its sample in each repetition."""
        return {
            s.rep: s
            for s in self.samples
            if (s.model, s.server, s.client, s.concurrency) == (model, server, client, c)
        }


@dataclass(frozen=True)
class Plan:
    models: list[str]
    levels: dict[str, list[int]]
    servers: list[str]
    clients: list[str]
    reps: int
    seconds: float
    connections: int


def measure_one(plan: Plan, client: str, address: str, workload: Workload, payloads: list[bytes],
                c: int, perf: PerfAnalyzer | None) -> Load:  # fmt: skip
    if client == "python":
        return asyncio.run(closed_loop(address, payloads, c, plan.connections, plan.seconds))
    assert perf is not None
    return perf.closed_loop(address, workload, c, plan.seconds)


def start_servers(stack: contextlib.ExitStack, servers: list[str], workload: Workload, tmp: Path,
                  results: Results) -> dict[str, str]:  # fmt: skip
    """The address of each server that started; the others' reasons go into results."""
    addresses = {}
    for server in servers:
        try:
            log = tmp / f"{workload.name}-{server}.log"
            addresses[server] = stack.enter_context(started(server, workload, log))
        except (RuntimeError, TimeoutError) as exc:  # a peer that cannot run here
            results.unavailable[server] = str(exc).splitlines()[0][:300]
    return addresses


def run_model(plan: Plan, model: str, tmp: Path, results: Results, perf: PerfAnalyzer | None,
              servers: list[str], clients: list[str]) -> None:  # fmt: skip
    workload = made_workload(model, tmp / "models", 256)
    payloads = workload.requests()
    with contextlib.ExitStack() as stack:
        addresses = start_servers(stack, servers, workload, tmp, results)
        up = list(addresses)
        for rep in range(plan.reps if up else 0):
            raw = raw_best(workload, plan.seconds * 2)
            results.raw.setdefault(model, []).append(f"{raw.best:.0f}/s {raw.label}")
            # Rotated between repetitions so that every server sees the same background load.
            for server in up[rep % len(up) :] + up[: rep % len(up)]:
                for client, c in itertools.product(clients, plan.levels[model]):
                    try:
                        load = measure_one(plan, client, addresses[server], workload, payloads,
                                           c, perf)  # fmt: skip
                    except RuntimeError as exc:  # perf_analyzer refused this server
                        results.unavailable[f"{server}/{client}/c={c}"] = str(exc)
                        continue
                    figures = (load.rate, load.p50_ms, load.p99_ms, raw.best)
                    results.samples.append(Sample(model, rep, server, client, c, *figures))
                    time.sleep(SETTLE_S)


def shown(value: float) -> str:
    """A ratio, with a third decimal below 0.1 (an RPC-bound model against its raw ceiling)."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def ratio(results: Results, model: str, server: str, client: str, c: int, peer: str) -> float:
    """Median over repetitions of server ÷ peer, each repetition against itself."""
    mine, theirs = (results.by_rep(model, s, client, c) for s in (server, peer))
    pairs = [mine[r].rate / theirs[r].rate for r in mine if r in theirs]
    return statistics.median(pairs) if pairs else float("nan")


def model_table(results: Results, model: str, plan: Plan) -> list[str]:
    lines = [
        f"### {model}: raw ORT best per rep {', '.join(results.raw.get(model, []))}",
        "",
        "| server | client | c | inputs/s | p50 ms | p99 ms | ÷ raw best | ÷ naive | ÷ triton |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for server in plan.servers:
        for client in plan.clients:
            for c in plan.levels[model]:
                cell = list(results.by_rep(model, server, client, c).values())
                if not cell:
                    continue
                median = statistics.median
                rate, p50 = median(s.rate for s in cell), median(s.p50_ms for s in cell)
                p99, vs_raw = (
                    median(s.p99_ms for s in cell),
                    median(s.rate / s.raw_best for s in cell),
                )
                vs = [ratio(results, model, server, client, c, p) for p in ("naive", "triton")]
                lines.append(
                    f"| {server} | {client} | {c} | {rate:.0f} | {p50:.2f} | {p99:.2f} | "
                    f"{shown(vs_raw)} | {shown(vs[0])} | {shown(vs[1])} |"
                )
    return lines


def summary_table(results: Results, plan: Plan) -> list[str]:
    """The issue's shape: a row per server and client, a column per model with its levels."""
    head = " | ".join(f"{m} c={'/'.join(map(str, plan.levels[m]))}" for m in plan.models)
    lines = [f"| ÷ raw ORT best (inputs/s) | {head} |", "|---|" + "---|" * len(plan.models)]
    rows: list[tuple[str, str, str | None]] = [
        (s, c, None) for s in plan.servers for c in plan.clients
    ]
    rows += [("onyx", c, peer) for peer in ("naive", "triton") for c in plan.clients]
    for server, client, peer in rows:
        cells = []
        for model in plan.models:
            levels = plan.levels[model]
            found = [list(results.by_rep(model, server, client, c).values()) for c in levels]
            if peer is not None:  # the peer ran too, or there is nothing to divide by
                found += [list(results.by_rep(model, peer, client, c).values()) for c in levels]
            if not all(found):
                cells.append(MISSING)
            elif peer is None:
                vs_raw = [statistics.median(s.rate / s.raw_best for s in f) for f in found]
                rates = [statistics.median(s.rate for s in f) for f in found]
                cells.append(f"{' / '.join(map(shown, vs_raw))} "
                             f"({' / '.join(f'{r:.0f}' for r in rates)})")  # fmt: skip
            else:
                vs = [ratio(results, model, server, client, c, peer) for c in levels]
                cells.append(" / ".join(map(shown, vs)))
        name = f"{server} ({client})" if peer is None else f"**onyx ÷ {peer}** ({client})"
        if any(cell != MISSING for cell in cells):
            lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def report(results: Results, plan: Plan) -> str:
    lines = [f"## Issue 13 table: {plan.reps} reps, {plan.seconds:g} s per block", ""]
    if results.unavailable:
        lines += [f"- {name}: not available ({why})" for name, why in results.unavailable.items()]
        lines.append("")
    lines += [*summary_table(results, plan), ""]
    for model in plan.models:
        lines += [*model_table(results, model, plan), ""]
    return "\n".join(lines)


def parse_levels(text: str, models: list[str]) -> dict[str, list[int]]:
    """`digits=1,8;text=1`: per-model concurrency overrides, the rest keep LEVELS."""
    levels = {m: list(LEVELS[m]) for m in models}
    for part in filter(None, text.split(";")):
        model, _, values = part.partition("=")
        if model not in levels:
            raise SystemExit(f"-c {part!r}: model must be one of {', '.join(models)}")
        levels[model] = [int(v) for v in values.split(",")]
    return levels


def parse_plan(argv: list[str] | None) -> tuple[Plan, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(LEVELS), help="resnet18, text, digits")
    parser.add_argument("--servers", default=",".join(SERVERS), help="onyx, onyx-wN, naive, triton")
    parser.add_argument("--client", choices=["python", "perf_analyzer", "both"], default="both")
    parser.add_argument("-c", "--concurrency", default="", help="e.g. 'digits=1,8;text=1'")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per block")
    parser.add_argument("--connections", type=int, default=4, help="python client channels")
    parser.add_argument("--quick", action="store_true", help="1 rep, 0.6 s blocks: a smoke run")
    parser.add_argument("--out", type=Path, help="write the raw samples as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.seconds = 1, 0.6
    models = args.models.split(",")
    if unknown := set(models) - set(LEVELS):
        raise SystemExit(f"unknown models {sorted(unknown)}: {', '.join(LEVELS)}")
    clients = list(CLIENTS) if args.client == "both" else [args.client]
    plan = Plan(models, parse_levels(args.concurrency, models), args.servers.split(","), clients,
                args.reps, args.seconds, args.connections)  # fmt: skip
    return plan, args.out


def available(
    plan: Plan, tmp: Path, results: Results
) -> tuple[list[str], list[str], PerfAnalyzer | None]:
    """The servers and clients that can run here; the others' reasons go into results."""
    servers, clients, perf = list(plan.servers), list(plan.clients), None
    if "triton" in servers and not TRITON_PYTHON.exists():
        results.unavailable["triton"] = f"no {TRITON_PYTHON}: run bench/setup_triton.sh"
        servers.remove("triton")
    if "perf_analyzer" in clients:
        try:
            perf = PerfAnalyzer.found(tmp)
        except SystemExit as exc:
            results.unavailable["perf_analyzer"] = str(exc).replace("\n", " ")
            clients.remove("perf_analyzer")
    return servers, clients, perf


def main(argv: list[str] | None = None) -> Results:
    plan, out = parse_plan(argv)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="onyx-table13-") as folder:
        tmp = Path(folder)
        servers, clients, perf = available(plan, tmp, results)
        for model in plan.models:
            run_model(plan, model, tmp / model, results, perf, servers, clients)
    print(report(results, plan), flush=True)
    if out is not None:
        document = {"plan": asdict(plan), **asdict(results)}
        out.write_text(json.dumps(document, indent=1))
    return results


if __name__ == "__main__":
    main()
