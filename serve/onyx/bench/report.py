"""The benchmark report: each load level, and the server as a ratio of raw ONNX Runtime."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from onyx.bench.baseline import BaselineResult
from onyx.bench.load import RunResult


def best(baseline: Sequence[BaselineResult]) -> BaselineResult:
    return max(baseline, key=lambda b: b.inputs_per_s)


def batch_one(baseline: Sequence[BaselineResult]) -> BaselineResult | None:
    return next((b for b in baseline if b.batch_size == 1), None)


def ratios(run: RunResult, baseline: Sequence[BaselineResult]) -> dict[str, float]:
    """Throughput over raw best-batch throughput; p50 minus raw batch-1 latency."""
    if not baseline:
        return {}
    out = {"throughput_vs_raw_best": round(run.throughput / best(baseline).inputs_per_s, 3)}
    single = batch_one(baseline)
    if single is not None:
        out["p50_minus_raw_bs1_ms"] = round(run.percentile_ms(50) - single.p50_ms, 3)
    return out


def as_json(runs: Sequence[RunResult], baseline: Sequence[BaselineResult]) -> dict[str, Any]:
    return {
        "baseline": [b.__dict__ for b in baseline],
        "runs": [{**run.summary(), **ratios(run, baseline)} for run in runs],
    }


def as_table(runs: Sequence[RunResult], baseline: Sequence[BaselineResult]) -> str:
    lines = []
    if baseline:
        lines.append("raw ONNX Runtime session.run, in-process:")
        lines += [
            f"  batch {b.batch_size:>3}: {b.inputs_per_s:9.1f} inputs/s   p50 {b.p50_ms:8.2f} ms"
            for b in baseline
        ]
    header = f"{'load':<14}{'inputs/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    header += f"{'errors':>8}{'vs raw':>8}{'p50-raw':>9}  server split (ms, mean)"
    lines += ["", header]
    for run in runs:
        r = ratios(run, baseline)
        load = f"{run.mode} {'c' if run.mode == 'closed' else 'rps'}={run.level:g}"
        errors = sum(run.errors.values()) + run.dropped
        split = " ".join(f"{k}={v:g}" for k, v in run.server.items())
        lines.append(
            f"{load:<14}{run.throughput:>10.1f}{run.percentile_ms(50):>9.2f}"
            f"{run.percentile_ms(90):>9.2f}{run.percentile_ms(99):>9.2f}"
            f"{max(run.latencies, default=float('nan')) * 1e3:>9.2f}{errors:>8}"
            f"{r.get('throughput_vs_raw_best', float('nan')):>8.2f}"
            f"{r.get('p50_minus_raw_bs1_ms', float('nan')):>9.2f}  {split}"
        )
    return "\n".join(lines)


# One round: the load levels, then raw ONNX Runtime measured right after them.
Round = tuple[Sequence[RunResult], Sequence[BaselineResult]]


def median_over_rounds(rounds: Sequence[Round]) -> list[dict[str, Any]]:
    """Per load level, the median over rounds of each round's figures and its own ratios (each
    round is compared with the raw figures measured beside it, never with another round's)."""
    levels = []
    for index, first in enumerate(rounds[0][0]):
        at = [(runs[index], raw) for runs, raw in rounds]
        figures: dict[str, Any] = {"mode": first.mode, "level": first.level, "rounds": len(at)}
        figures["inputs_per_s"] = round(statistics.median(run.throughput for run, _ in at), 2)
        for key, q in (("p50_ms", 50), ("p99_ms", 99)):
            figures[key] = round(statistics.median(run.percentile_ms(q) for run, _ in at), 3)
        per_round = [ratios(run, raw) for run, raw in at]
        for key in ("throughput_vs_raw_best", "p50_minus_raw_bs1_ms"):
            values = [r.get(key) for r in per_round]
            if all(v is not None for v in values):
                figures[key] = round(statistics.median(v for v in values if v is not None), 3)
        levels.append(figures)
    return levels


def median_table(levels: Sequence[dict[str, Any]]) -> str:
    header = f"{'load':<14}{'inputs/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs raw':>8}{'p50-raw':>9}"
    lines = [f"median over {levels[0]['rounds']} rounds:" if levels else "", header]
    for f in levels:
        load = f"{f['mode']} {'c' if f['mode'] == 'closed' else 'rps'}={f['level']:g}"
        lines.append(
            f"{load:<14}{f['inputs_per_s']:>10.1f}{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}"
            f"{f.get('throughput_vs_raw_best', float('nan')):>8.2f}"
            f"{f.get('p50_minus_raw_bs1_ms', float('nan')):>9.2f}"
        )
    return "\n".join(lines)
