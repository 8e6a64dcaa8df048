"""Issue 13's table: Onyx vs a naive server vs raw ONNX Runtime on small models, one command.

    python bench/small_models.py                                  # BiLSTM, c=1,8,32, 3 reps
    python bench/small_models.py --model resnet18 -c 1,4,16       # made on the fly (or -r)
    python bench/small_models.py --servers onyx,onyx-w2 -c 1,8,32 # the --workers scaling curve
    python bench/table13.py                                       # the whole table, both clients

Servers, each in its own process on the same model file, all spoken to over KServe v2 gRPC
(ModelInfer, one input per request, request bytes serialized once) by the same Python load
generator: `onyx` (`onyx serve`, `onyx-wN` with `--workers N`), `naive`
(`bench/naive_server.py`: ONNX Runtime per request, no batching) and `triton`
(`bench/triton_server.py` in `.bench-venv/triton`, made by `bench/setup_triton.sh`). Each
repetition measures raw `session.run` in this process at batch 1, 4, 8 and 16 (text: over the
same sequences in arrival order, each batch padded to its longest; the best batch is the
ceiling), then every server at every concurrency for --seconds, the servers' order rotating
between repetitions so all see the same background load. Printed: per server and concurrency
the medians over repetitions of inputs/s, p50, the ratio to that repetition's raw best,
Onyx ÷ naive, and the ratio to the raw best in arrival order (batches padded to their longest,
not sorted).

text: a BiLSTM (vocabulary 20k, embedding 128, hidden 128, both directions, random weights) fed
one [1, L] sequence per request, L uniform in 16..256. Clients use several connections
(`--connections`), so `--workers` can spread them (the kernel balances connections, not calls).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from onyx.bench.baseline import newest_model_file
from onyx.bench.runner import free_port, wait_listening
from onyx.proto.kserve import grpc_service_pb2 as kv2

ROOT = Path(__file__).resolve().parent.parent
TRITON_PYTHON = ROOT / ".bench-venv" / "triton" / "bin" / "python"
TRITON_READY = "triton serving"  # bench/triton_server.py's line once its model is loaded
METHOD = "/inference.GRPCInferenceService/ModelInfer"
RAW_BATCHES = (1, 4, 8, 16)
# ONNX Runtime's pool spins for a while after a run: let it stop before the next block.
SETTLE_S = 0.2


@dataclass(frozen=True)
class Workload:
    name: str  # the model's name in the repository
    model_file: Path
    repository: Path
    input_name: str
    inputs: list[np.ndarray]  # one request's input each, batch axis first (1, ...)

    def requests(self) -> list[bytes]:
        datatype = "INT64" if self.inputs[0].dtype == np.int64 else "FP32"
        return [
            kv2.ModelInferRequest(
                model_name=self.name,
                inputs=[
                    kv2.ModelInferRequest.InferInputTensor(
                        name=self.input_name, datatype=datatype, shape=list(array.shape)
                    )
                ],
                raw_input_contents=[array.tobytes()],
            ).SerializeToString()
            for array in self.inputs
        ]


@dataclass(frozen=True)
class Load:
    """One closed-loop measurement: requests/s and latency percentiles."""

    rate: float
    p50_ms: float
    p99_ms: float


@dataclass
class Cell:
    """One server at one concurrency, over the repetitions."""

    rates: list[float] = field(default_factory=list)
    p50s_ms: list[float] = field(default_factory=list)
    vs_raw: list[float] = field(default_factory=list)
    vs_arrival: list[float] = field(default_factory=list)


def text_workload(root: Path, count: int, max_batch_size: int) -> Workload:
    """Export and publish the BiLSTM into root/models (onyx.train does it as a user would)."""
    import torch

    from onyx.contract.text import PAD, UNK, Vocabulary
    from onyx.train.export import ExportConfig, export_verified
    from onyx.train.export.publish import publish
    from onyx.train.export.text import build_text_config, example_ids, parity_inputs
    from onyx.train.tasks.text.models import TextClassifier, TextModelConfig

    vocab, max_length = 20_000, 256
    torch.manual_seed(0)
    config = TextModelConfig(vocab_size=vocab, num_classes=2, embed_dim=128, hidden=128,
                             bidirectional=True, pooling="last")  # fmt: skip
    model = TextClassifier(config).eval()
    work = root / "export"
    work.mkdir(parents=True)
    exporter, diff = export_verified(
        model, work / "model.onnx", 18, parity_inputs(vocab, max_length), 1e-4, 1e-3,
        example=example_ids(vocab), time_axis=True, external_data=False,
    )  # fmt: skip
    Vocabulary([PAD, UNK, *(f"w{i}" for i in range(2, vocab))]).save(work / "vocab.txt")
    checkpoint = {"labels": ["negative", "positive"], "model_config": {"cell": "lstm"},
                  "max_length": max_length, "tokenizer": "onyx-words-v1",
                  "config": {"data": "random weights"}}  # fmt: skip
    export = ExportConfig(checkpoint=work, name="text", repository=root / "models",
                          max_batch_size=max_batch_size, max_queue_delay_us=0)  # fmt: skip
    model_config = build_text_config(export, checkpoint, exporter, diff, 10)
    _, model_path = publish(root / "models", model_config, work)
    rng = np.random.default_rng(1)
    lengths = rng.integers(16, 257, count)
    inputs = [rng.integers(2, vocab, (1, n)).astype(np.int64) for n in lengths]
    return Workload("text", model_path, root / "models", "input", inputs)


def made_workload(model: str, root: Path, count: int, max_batch_size: int = 16) -> Workload:
    """`text`, `resnet18` or `digits`, exported and published into a repository of its own
    under `root` (each server then loads only the model it is measured on)."""
    if model == "text":
        return text_workload(root / "text", count, max_batch_size)
    if str(ROOT) not in sys.path:  # run as a script: the checkout root, for bench.make_models
        sys.path.insert(0, str(ROOT))
    from bench.make_models import MAKERS

    if model not in MAKERS:
        raise SystemExit(f"unknown model {model!r}: text, {', '.join(sorted(MAKERS))}")
    repository = root / model / "models"
    MAKERS[model](repository, max_batch_size, 0)
    # A few distinct images are enough (their content does not change the cost), and keep
    # ResNet18's payloads (600 kB each) small in memory.
    return image_workload(repository, model, min(count, 16))


def image_workload(repository: Path, name: str, count: int) -> Workload:
    model_file = newest_model_file(repository, name)
    spec = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]).get_inputs()
    shape = [1, *spec[0].shape[1:]]
    rng = np.random.default_rng(1)
    inputs = [rng.random(shape).astype(np.float32) for _ in range(count)]
    return Workload(name, model_file, repository, spec[0].name, inputs)


@dataclass(frozen=True)
class Raw:
    best: float  # inputs/s, the best of every trial
    label: str  # which: threads/batch/order
    arrival: float  # the best in arrival order (each batch padded to its longest, unsorted)


def raw_best(workload: Workload, seconds: float) -> Raw:
    """Best inputs/s of in-process session.run, over 1 and 2 intra-op threads, RAW_BATCHES and
    (text) arrival or length-sorted order; which of them got it; the best in arrival order."""
    best, arrival = (0.0, ""), 0.0
    text = workload.inputs[0].dtype == np.int64
    orders = ("arrival", "sorted") if text else ("arrival",)
    trials = 2 * len(RAW_BATCHES) * len(orders)
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(
            str(workload.model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        for size in RAW_BATCHES:
            for order in orders:
                batches = raw_batches(workload, size, sorted_by_length=order == "sorted")
                rate = raw_rate(session, workload.input_name, batches, seconds / trials)
                best = max(best, (rate, f"{threads}t/b{size}/{order}"))
                arrival = max(arrival, rate if order == "arrival" else 0.0)
                time.sleep(SETTLE_S / 4)
    return Raw(best[0], best[1], arrival)


def raw_batches(workload: Workload, size: int, sorted_by_length: bool) -> list[np.ndarray]:
    from onyx.contract.text import pad_batch

    inputs = workload.inputs
    if sorted_by_length:
        inputs = sorted(inputs, key=lambda array: array.shape[1])
    groups = [inputs[i : i + size] for i in range(0, len(inputs), size)]
    if inputs[0].dtype == np.int64:  # text: each batch padded to its longest
        return [pad_batch([array[0] for array in group]) for group in groups]
    return [np.concatenate(group) for group in groups]


def raw_rate(session: ort.InferenceSession, name: str, batches: list[np.ndarray],
             seconds: float) -> float:  # fmt: skip
    session.run(None, {name: batches[0]})
    rows = done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or done < len(batches):
        batch = batches[done % len(batches)]
        session.run(None, {name: batch})
        rows, done = rows + len(batch), done + 1
    return rows / (time.perf_counter() - started)


async def closed_loop(address: str, payloads: list[bytes], clients: int, connections: int,
                      seconds: float) -> Load:  # fmt: skip
    """`clients` back-to-back senders over `connections` channels for `seconds`."""
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)]
    channels = [grpc.aio.insecure_channel(address, options=options)
                for _ in range(min(clients, connections))]  # fmt: skip
    calls = [channel.unary_unary(METHOD) for channel in channels]
    latencies: list[float] = []
    for call in calls:  # connect and warm each up
        await call(payloads[0], timeout=60)
    deadline = time.perf_counter() + seconds

    async def sender(index: int) -> None:
        call, turn = calls[index % len(calls)], index
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call(payloads[turn % len(payloads)], timeout=60)
            latencies.append(time.perf_counter() - started)
            turn += clients

    started = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    return Load(len(latencies) / elapsed, float(p50), float(p99))


@contextmanager
def started(server: str, workload: Workload, log: Path) -> Iterator[str]:
    """Start `server` ("naive", "triton", "onyx", "onyx-wN") on the workload's model; yields
    its address."""
    with running(server, workload, log) as (address, _):
        yield address


@contextmanager
def running(server: str, workload: Workload, log: Path, checkout: Path = ROOT,
            extra: Sequence[str] = ()) -> Iterator[tuple[str, int]]:  # fmt: skip
    """`started`, with Onyx's code taken from `checkout` (another worktree: another commit's
    server) and `extra` arguments for the server; yields (address, pid)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{checkout / 'serve'}{os.pathsep}{checkout / 'train'}"}
    if server == "naive":
        command = [sys.executable, str(ROOT / "bench" / "naive_server.py"),
                   str(workload.model_file), str(port)]  # fmt: skip
    elif server == "triton":
        env.pop("PYTHONPATH")  # its own venv, nothing of Onyx's
        command = [str(TRITON_PYTHON), str(ROOT / "bench" / "triton_server.py"),
                   str(workload.model_file), str(port), "--name", workload.name,
                   "--max-batch-size", "16"]  # fmt: skip
    else:
        workers = server.partition("-w")[2] or "1"
        command = [sys.executable, "-m", "onyx", "serve", "-r", str(workload.repository),
                   "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
                   "--device", "cpu", "--log-level", "info", "--workers", workers]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen([*command, *extra], env=env, stdout=output, stderr=output)
    try:
        if server == "triton":  # it says so once listening with its model loaded
            wait_logged(log, TRITON_READY, process, server)  # type: ignore[arg-type]
        else:
            wait_listening(f"127.0.0.1:{port}", process)  # type: ignore[arg-type]
        if server.startswith("onyx-w"):  # every worker, not just the first
            wait_logged(log, "serving with", process, server)  # type: ignore[arg-type]
        yield f"127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(60)


def wait_logged(log: Path, marker: str, process: subprocess.Popen[bytes], name: str,
                timeout_s: float = 120) -> None:  # fmt: skip
    """Return once `marker` is in the server's log; fail with the log's tail if it exits."""
    deadline = time.monotonic() + timeout_s
    while marker not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            state = f"exit {process.returncode}" if process.poll() is not None else "timed out"
            raise RuntimeError(f"{name} not ready ({state}): " + " | ".join(tail))
        time.sleep(0.2)


def measure(args: argparse.Namespace, workload: Workload, tmp: Path) -> None:
    servers = args.servers.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    payloads = workload.requests()
    cells = {(s, c): Cell() for s in servers for c in levels}
    raws: list[Raw] = []
    with contextlib.ExitStack() as stack:
        addresses = {
            s: stack.enter_context(started(s, workload, tmp / f"{s}.log")) for s in servers
        }
        for rep in range(args.reps):
            raw = raw_best(workload, args.seconds * 2)
            raws.append(raw)
            order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
            for server in order:
                for clients in levels:
                    load = closed_loop(
                        addresses[server], payloads, clients, args.connections, args.seconds
                    )
                    result = asyncio.run(load)
                    cell = cells[server, clients]
                    cell.rates.append(result.rate)
                    cell.p50s_ms.append(result.p50_ms)
                    cell.vs_raw.append(result.rate / raw.best)
                    cell.vs_arrival.append(result.rate / raw.arrival)
                    time.sleep(SETTLE_S)
    report(workload, servers, levels, cells, raws)


def report(workload: Workload, servers: list[str], levels: list[int],
           cells: dict[tuple[str, int], Cell], raws: list[Raw]) -> None:  # fmt: skip
    median = statistics.median
    best = ", ".join(raw.label for raw in raws)
    print(f"\n{workload.name}: {len(raws)} reps; raw ORT best {median(r.best for r in raws):.0f} "
          f"inputs/s ({best}: threads/batch/order per rep), in arrival order "
          f"{median(r.arrival for r in raws):.0f}")  # fmt: skip
    header = ("server", "c", "inputs/s", "p50 ms", "÷ raw best", "÷ naive", "÷ raw arrival")
    print("{:<10} {:>3} {:>9} {:>8} {:>10} {:>8} {:>13}".format(*header))
    for server in servers:
        for clients in levels:
            cell = cells[server, clients]
            naive = cells.get(("naive", clients))
            vs_naive = (
                median(a / b for a, b in zip(cell.rates, naive.rates, strict=True))
                if naive is not None else float("nan")
            )  # fmt: skip
            rate, p50, vs_raw = median(cell.rates), median(cell.p50s_ms), median(cell.vs_raw)
            vs_arrival = median(cell.vs_arrival)
            figures = f"{rate:9.0f} {p50:8.2f} {vs_raw:10.2f} {vs_naive:8.2f} {vs_arrival:13.2f}"
            print(f"{server:<10} {clients:>3} {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="text", help="text, digits, resnet18 (made on the fly), or a model in -r"
    )
    parser.add_argument("--repository", "-r", type=Path, default=ROOT / "bench" / "models")
    parser.add_argument("--servers", default="onyx,naive", help="onyx, onyx-wN, naive, triton")
    parser.add_argument("--concurrency", "-c", default="1,8,32")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per block")
    parser.add_argument("--connections", type=int, default=4, help="client channels, at most")
    parser.add_argument("--max-batch-size", type=int, default=16, help="made models")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onyx-small-models-") as tmp:
        if (
            args.model in ("text", "digits", "resnet18")
            and not (args.repository / args.model).is_dir()
        ):
            workload = made_workload(args.model, Path(tmp), 256, args.max_batch_size)
        else:
            workload = image_workload(args.repository, args.model, 16)
        measure(args, workload, Path(tmp))


if __name__ == "__main__":
    main()
