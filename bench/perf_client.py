"""perf_analyzer (Triton's C++ KServe v2 load generator) as the table's second client.

    client = PerfAnalyzer.found(tmp)              # refuses with the fix when it cannot start
    load = client.closed_loop(address, workload, clients=8, seconds=3.0)

It sends the workload's own inputs, one per request and in order, through `--input-data`
(each as base64 of its raw bytes with its own shape without the batch axis, so variable-length
text keeps its lengths), `-b 1`, synchronous calls at `--concurrency-range clients`. A block of
`seconds` is three windows of a third each with the stability check off (`-s 999`, 3 trials):
perf_analyzer reports the last three windows together, as one measurement. Its client is C++,
so its own CPU cost per request is far below the Python generator's, which on a 2-core machine
is otherwise counted as the server's.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.perf_analyzer import binary_environment, find_binary, parse_report
from bench.small_models import Load, Workload

WINDOWS = 3
TOO_SHORT = "No valid requests recorded within time interval"


def input_data(workload: Workload, path: Path) -> Path:
    """perf_analyzer's `--input-data` JSON holding the workload's inputs; returns `path`."""
    steps = [
        {
            workload.input_name: {
                "content": {"b64": base64.b64encode(array.tobytes()).decode()},
                "shape": list(array.shape[1:]),
            }
        }
        for array in workload.inputs
    ]
    path.write_text(json.dumps({"data": steps}))
    return path


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    env: dict[str, str]
    work: Path  # where the input files and reports go

    @classmethod
    def found(cls, work: Path) -> PerfAnalyzer:
        """The installed binary with the libraries it needs; SystemExit with the fix if not."""
        binary = find_binary()
        return cls(binary, binary_environment(binary), work)

    def closed_loop(self, address: str, workload: Workload, clients: int, seconds: float) -> Load:
        """perf_analyzer's figures for `clients` synchronous senders over about `seconds`; the
        windows grow (x4, twice) when one was too short to complete a request (ResNet18 at
        c=16 in a --quick run), so a slow model is measured rather than refused."""
        data = self.work / f"{workload.name}.json"
        if not data.exists():
            input_data(workload, data)
        window_ms = max(50, round(seconds * 1e3 / WINDOWS))
        for _ in range(3):
            load, output = self._run(address, workload.name, data, clients, window_ms)
            if load is not None:
                return load
            if TOO_SHORT not in output:
                break
            window_ms *= 4
        last = [line for line in output.splitlines() if line.strip()][-1:]
        raise RuntimeError(
            f"perf_analyzer {workload.name} c={clients} at {address}: {' '.join(last)}"
        )

    def _run(self, address: str, model: str, data: Path, clients: int,
             window_ms: int) -> tuple[Load | None, str]:  # fmt: skip
        with tempfile.TemporaryDirectory(dir=self.work) as folder:
            report = Path(folder) / "report.csv"
            command = [
                str(self.binary), "-m", model, "-i", "grpc", "-u", address, "-b", "1",
                "--input-data", str(data), "--concurrency-range", str(clients),
                "--measurement-interval", str(window_ms), "--max-trials", str(WINDOWS),
                "--stability-percentage", "999", "--percentile", "50", "-f", str(report),
            ]  # fmt: skip
            done = subprocess.run(command, env=self.env, capture_output=True, text=True)
            if done.returncode != 0 or not report.exists():
                return None, done.stdout + done.stderr
            (level,) = parse_report(report.read_text())
        return Load(level.inputs_per_s, level.p50_ms, level.p99_ms), ""
