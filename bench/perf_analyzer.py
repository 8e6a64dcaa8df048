"""Onyx under Triton's own load generator (perf_analyzer, C++), beside raw ONNX Runtime.

    python bench/perf_analyzer.py                        # bench/models resnet18, c=1 and c=16
    python bench/perf_analyzer.py -c 1,4,16 --rounds 5 --json
    python bench/perf_analyzer.py --protocol http         # KServe v2 REST (`--http-port`)

`onyx bench` generates load from Python: on a 2-core machine its client spends part of a core and
a few hundred microseconds per request that are then timed as the server's. perf_analyzer is the
C++ tool Triton is measured with; it speaks KServe v2, which Onyx also serves, so the same
numbers can be taken for Onyx and for Triton. Each round measures raw `session.run` in this
process (batch 1 and the batch sizes up to the model's max), then perf_analyzer at each
concurrency against `onyx serve` started on the same model file, then raw again; rounds are
alternated so that both sides see the same machine, and the summary is the median over rounds.

perf_analyzer ships in the `tritonclient` wheel (the dev extra). It needs libb64 (Debian:
`apt-get install libb64-0d`) and libcudart.so.12 even on CPU (PyPI: `nvidia-cuda-runtime-cu12`;
this script finds it in site-packages).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from onyx.bench.baseline import BaselineResult, measure, newest_model_file
from onyx.bench.runner import free_port, spawned_server
from onyx.contract.dtypes import DTYPES
from onyx.contract.layout import version_config

CUDA_RUNTIME = "libcudart.so.12"
MISSING_LIBRARY = "error while loading shared libraries"


@dataclass(frozen=True)
class Level:
    """perf_analyzer's figures at one concurrency."""

    concurrency: int
    inputs_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Round:
    raw_bs1_p50_ms: float
    raw_best_inputs_per_s: float
    raw_best_batch: int
    levels: list[Level]

    def p50_minus_raw_ms(self, level: Level) -> float:
        return level.p50_ms - self.raw_bs1_p50_ms

    def vs_raw_best(self, level: Level) -> float:
        return level.inputs_per_s / self.raw_best_inputs_per_s


def find_binary() -> Path:
    found = shutil.which("perf_analyzer") or shutil.which(
        "perf_analyzer", path=str(Path(sys.executable).parent)
    )
    if found is None:
        raise SystemExit("perf_analyzer not found: pip install 'tritonclient[grpc]' (dev extra)")
    return Path(found)


def cuda_runtime_dirs() -> list[str]:
    """Folders of site-packages that hold libcudart.so.12 (pip's nvidia-cuda-runtime-cu12)."""
    roots = [*site.getsitepackages(), site.getusersitepackages()]
    return sorted(
        {
            str(hit.parent)
            for root in roots
            for hit in Path(root).glob(f"nvidia/*/lib/{CUDA_RUNTIME}")
        }
    )


def binary_environment(binary: Path) -> dict[str, str]:
    """The environment perf_analyzer loads in; refuses with the fix when a library is missing."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [*cuda_runtime_dirs(), *filter(None, [env.get("LD_LIBRARY_PATH")])]
    )
    probe = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True)
    if MISSING_LIBRARY in probe.stderr:
        raise SystemExit(
            f"perf_analyzer cannot start: {probe.stderr.strip()}\n"
            "  libb64.so.0d: apt-get install libb64-0d\n"
            f"  {CUDA_RUNTIME}: pip install nvidia-cuda-runtime-cu12"
        )
    return env


def run_level(
    binary: Path, env: dict[str, str], address: str, model: str, concurrency: int, window_ms: int,
    protocol: str = "grpc",
) -> Level:  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "levels.csv"
        command = [
            str(binary), "-m", model, "-i", protocol, "-u", address, "-b", "1",
            "--concurrency-range", str(concurrency), "--measurement-interval", str(window_ms),
            "--percentile", "50", "--stability-percentage", "20", "--max-trials", "6",
            "-f", str(report),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not report.exists():
            raise RuntimeError(f"perf_analyzer c={concurrency} failed:\n{done.stdout}{done.stderr}")
        return parse_report(report.read_text())[0]


def parse_report(text: str) -> list[Level]:
    """perf_analyzer's `-f` CSV: one row per concurrency, latencies in microseconds."""
    return [
        Level(
            concurrency=int(row["Concurrency"]),
            inputs_per_s=float(row["Inferences/Second"]),
            p50_ms=float(row["p50 latency"]) / 1e3,
            p99_ms=float(row["p99 latency"]) / 1e3,
        )
        for row in csv.DictReader(text.splitlines())
    ]


def raw_sample(repository: Path, model: str) -> tuple[Path, np.ndarray, int]:
    """The newest model file, one random input of its shape, and its max batch size."""
    model_file = newest_model_file(repository, model)
    # The newest version's own description: its input tensor; batching from config.pbtxt.
    config = version_config(repository / model, int(model_file.parent.name))
    dims = list(config.input.dims[1:])
    if any(d < 0 for d in dims):
        raise SystemExit(f"{model}: variable input dims {dims}; use a fixed-shape model")
    dtype = DTYPES[config.input.dtype].numpy
    sample = np.random.default_rng(0).random(dims).astype(dtype)
    return model_file, sample, max(1, config.batching.max_batch_size)


def raw_round(
    model_file: Path, sample: np.ndarray, max_batch: int, seconds: float
) -> list[BaselineResult]:
    batches = sorted({1, *(b for b in (2, 4, 8, 16, 32) if b <= max_batch)})
    return measure(model_file, sample, batches, seconds)


def one_round(
    binary: Path, env: dict[str, str], address: str, model: str, concurrency: list[int],
    window_ms: int, raw: tuple[Path, np.ndarray, int], raw_seconds: float,
    protocol: str = "grpc",
) -> Round:  # fmt: skip
    before = raw_round(*raw, raw_seconds)
    levels = [run_level(binary, env, address, model, c, window_ms, protocol) for c in concurrency]
    after = raw_round(*raw, raw_seconds)
    # Raw figures are the mean of before and after: the machine drifts while perf_analyzer runs.
    single = statistics.mean(r.p50_ms for r in (before[0], after[0]))
    per_batch = {
        b.batch_size: statistics.mean([b.inputs_per_s, a.inputs_per_s])
        for b, a in zip(before, after, strict=True)
    }
    best_batch = max(per_batch, key=lambda size: per_batch[size])
    return Round(single, per_batch[best_batch], best_batch, levels)


def summary(rounds: list[Round]) -> dict[str, dict[str, float]]:
    """Per concurrency: medians over rounds of the two ratios we steer by."""
    out = {}
    for index, level in enumerate(rounds[0].levels):
        at = [r.levels[index] for r in rounds]
        out[f"c={level.concurrency}"] = {
            "p50_ms": statistics.median(lv.p50_ms for lv in at),
            "p50_minus_raw_bs1_ms": statistics.median(
                r.p50_minus_raw_ms(lv) for r, lv in zip(rounds, at, strict=True)
            ),
            "vs_raw_best": statistics.median(
                r.vs_raw_best(lv) for r, lv in zip(rounds, at, strict=True)
            ),
            "p99_ms": statistics.median(lv.p99_ms for lv in at),
        }
    return out


def print_round(index: int, result: Round) -> None:
    print(
        f"round {index}: raw bs1 p50 {result.raw_bs1_p50_ms:.2f} ms, raw best "
        f"{result.raw_best_inputs_per_s:.1f}/s (batch {result.raw_best_batch})"
    )
    for level in result.levels:
        print(
            f"  c={level.concurrency:<3d} {level.inputs_per_s:7.1f}/s "
            f"({result.vs_raw_best(level):.2f}x raw best)  p50 {level.p50_ms:7.2f} ms "
            f"({result.p50_minus_raw_ms(level):+.2f} vs raw bs1)  p99 {level.p99_ms:7.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", "-r", type=Path, default=Path("bench/models"))
    parser.add_argument("--model", "-m", default="resnet18")
    parser.add_argument("--concurrency", "-c", default="1,16", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window-ms", type=int, default=5000, help="perf_analyzer window")
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="per raw batch size")
    parser.add_argument("--serve-arg", action="append", default=[], help="for `onyx serve`")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = find_binary()
    env = binary_environment(binary)
    raw = raw_sample(args.repository, args.model)
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    rounds = []
    serve_args = tuple(args.serve_arg)
    if args.protocol == "http":
        http_port = free_port()
        serve_args += ("--http-port", str(http_port))
    with spawned_server(args.repository, serve_args) as (address, _metrics):
        if args.protocol == "http":
            address = f"127.0.0.1:{http_port}"
        for index in range(args.rounds):
            result = one_round(
                binary, env, address, args.model, concurrency, args.window_ms, raw,
                args.raw_seconds, args.protocol,
            )  # fmt: skip
            rounds.append(result)
            if not args.json:
                print_round(index + 1, result)
    medians = summary(rounds)
    if args.json:
        print(json.dumps({"rounds": [asdict(r) for r in rounds], "median": medians}, indent=2))
        return
    print(f"median over {len(rounds)} rounds:")
    for level, figures in medians.items():
        print(
            f"  {level:<5s} p50 {figures['p50_ms']:.2f} ms ({figures['p50_minus_raw_bs1_ms']:+.2f} "
            f"vs raw bs1), {figures['vs_raw_best']:.2f}x raw best, p99 {figures['p99_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
