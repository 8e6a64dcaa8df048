"""The GPU path checked in one run, on a lent GPU machine; `--smoke` runs it here on the CPU.

    scripts/gpu-wheel        # here, once: onnxruntime-gpu in pieces, and how to install it there
    PYTHONPATH=.gpu-site:serve:train python3 bench/gpu_check.py --out $OUT/gpu_check.json  # there
    python bench/gpu_check.py --smoke                                     # here: tiny, CPU

Builds ResNet18 (random weights, `bench/make_models.py`) as version 1 and its fp16 variant
(`onyx.train.export.quantize.convert_fp16`, float32 at the edges) as version 2, then reports:

1. providers: what `onyx.serve.execution.runtime` chooses and why, what a served version reports
   (GetModel), and which provider ONNX Runtime's profiler saw running the graph's nodes
   (used, not just listed);
2. parity of fp32 and fp16 on the device against fp32 on the CPU: max |logit diff|, top-1
   agreement, and whether within tolerance (fp32: make_models' 1e-3 + 1e-3 |ref|; fp16: the
   variant gate's FP16_ATOL + FP16_RTOL |ref|);
3. throughput: in-process best batch (an `onyx.serve.execution.runtime.Session`, as served) vs `onyx
   serve` at concurrency 16, per precision (issue 15's target: served >= 0.8x in-process);
4. IO binding on vs off, in-process at the best batch and served;
5. cudnn_conv_algo_search HEURISTIC (Onyx's) vs EXHAUSTIVE (ORT's default): the first run at
   each new batch size, and the steady rate at the best batch.

Measurements alternate round by round (fp32, fp16, ...; binding on, off, ...) so that a
machine's drift hits both alike; read the ratios. Not a test (tests/bench/test_gpu_check.py runs
`--smoke`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from onyx.bench.load import RunResult, classify_call, closed_loop, make_sender
from onyx.bench.runner import spawned_server
from onyx.contract.layout import describe_version
from onyx.contract.model_config import load_config
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.execution import runtime
from onyx.serve.execution.runtime import RuntimeOptions, Session
from onyx.train.export.gate import FP16_ATOL, FP16_RTOL
from onyx.train.export.publish import publish
from onyx.train.export.quantize import convert_fp16

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.make_models import build_resnet18

FP32_ATOL = FP32_RTOL = 1e-3  # make_models' parity check against torch
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class Settings:
    device: runtime.Device
    size: int  # image side
    max_batch_size: int  # the served config's; in-process batches go up to it
    batches: tuple[int, ...]
    seconds: float  # per measurement
    rounds: int
    concurrency: int
    parity_samples: int


FULL = Settings("cuda", 224, 16, (1, 2, 4, 8, 16), 3.0, 2, 16, 64)
SMOKE = Settings("cpu", 32, 4, (1, 4), 0.3, 1, 4, 8)


@dataclass
class Model:
    config: pb.ModelConfig
    paths: dict[str, Path]  # precision -> model.onnx
    versions: dict[str, int]


def build(repository: Path, settings: Settings) -> Model:
    """ResNet18 fp32 as version 1, its fp16 conversion as version 2 (a variant of 1)."""
    version, fp32 = build_resnet18(repository, settings.max_batch_size, 0, settings.size)
    config = describe_version(load_config(fp32.parent.parent / "config.pbtxt"), fp32.parent)
    with tempfile.TemporaryDirectory() as work:
        convert_fp16(fp32, Path(work) / "model.onnx")
        variant = pb.ModelConfig()
        variant.CopyFrom(config)
        variant.variant.precision = pb.PRECISION_FP16
        variant.variant.base_version = version
        fp16_version, fp16 = publish(repository, variant, Path(work))
    policy = fp32.parent.parent / "config.pbtxt"  # serve both versions
    policy.write_text(policy.read_text() + "version_policy { all {} }\n")
    return Model(config, {"fp32": fp32, "fp16": fp16}, {"fp32": version, "fp16": fp16_version})


def inputs(settings: Settings, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 3, settings.size, settings.size), dtype=np.float32)


def session(model: Model, precision: str, options: RuntimeOptions) -> Session:
    return Session(model.paths[precision], model.config, options)


def nodes_by_provider(path: Path, providers: list[str], sample: np.ndarray) -> dict[str, int]:
    """Which provider ran each node of one profiled run (ORT's own record)."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as work:
        options.profile_file_prefix = str(Path(work) / "profile")
        profiled = ort.InferenceSession(
            str(path), options, providers=runtime.with_options(providers)
        )
        profiled.run(None, {profiled.get_inputs()[0].name: sample})
        events = json.loads(Path(profiled.end_profiling()).read_text())
    counts: dict[str, int] = {}
    for event in events:
        provider = event.get("args", {}).get("provider")
        if event.get("cat") == "Node" and provider:
            counts[provider] = counts.get(provider, 0) + 1
    return counts


def logits(s: Session, output: str, data: np.ndarray, batch: int) -> np.ndarray:
    """Output `output` of `s` over `data`, run `batch` rows at a time."""
    return np.concatenate([s.run(data[i : i + batch])[output] for i in range(0, len(data), batch)])


def parity(model: Model, settings: Settings) -> dict[str, dict[str, Any]]:
    """fp32 and fp16 on the device against fp32 on the CPU, on the same random inputs."""
    data = inputs(settings, settings.parity_samples, seed=1)
    batch = settings.max_batch_size
    cpu = session(model, "fp32", RuntimeOptions(device="cpu"))
    output = model.config.output.name
    reference = logits(cpu, output, data, batch)
    figures = {}
    for precision in PRECISIONS:
        device = session(model, precision, RuntimeOptions(device=settings.device))
        got = logits(device, output, data, batch)
        atol, rtol = (FP16_ATOL, FP16_RTOL) if precision == "fp16" else (FP32_ATOL, FP32_RTOL)
        figures[precision] = {
            "providers": device.providers,
            "max_abs_diff": float(np.abs(got - reference).max()),
            "top1_agreement": float(np.mean(got.argmax(1) == reference.argmax(1))),
            "tolerance": f"{atol:g} + {rtol:g} * |cpu fp32|",
            "within_tolerance": bool(np.allclose(got, reference, atol=atol, rtol=rtol)),
            "samples": len(data),
        }
    return figures


def rate(run: Callable[[np.ndarray], object], data: np.ndarray, seconds: float) -> float:
    """Inputs per second running `data` (one batch) back to back for `seconds`."""
    run(data)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(data)
        done += len(data)
    return done / (time.perf_counter() - started)


def in_process(model: Model, settings: Settings) -> dict[str, Any]:
    """Per precision and IO binding setting: inputs/s at each batch size (median over rounds)."""
    options = {b: RuntimeOptions(settings.device, io_binding=b) for b in ("on", "off")}
    sessions = {
        (precision, binding): session(model, precision, options[binding])
        for precision in PRECISIONS
        for binding in ("on", "off")
    }
    rates: dict[str, list[float]] = {}
    for _ in range(settings.rounds):
        for batch in settings.batches:
            data = inputs(settings, batch)
            for (precision, binding), s in sessions.items():
                key = f"{precision} binding {binding} b={batch}"
                rates.setdefault(key, []).append(rate(s.run, data, settings.seconds))
    return {key: statistics.median(values) for key, values in rates.items()}


def best(rates: dict[str, float], prefix: str) -> tuple[int, float]:
    """(batch, inputs/s) of the fastest batch size among `rates` keys starting with `prefix`."""
    key = max((k for k in rates if k.startswith(prefix)), key=lambda k: rates[k])
    return int(key.rsplit("b=", 1)[1]), rates[key]


async def served_rate(address: str, payload: bytes, settings: Settings) -> RunResult:
    async with grpc.aio.insecure_channel(address) as channel:
        call = classify_call(channel)
        result = RunResult("closed", settings.concurrency, 1)
        send = make_sender(call, payload, result, timeout_s=60)
        await asyncio.gather(*(send() for _ in range(settings.concurrency)))  # warm-up
        result.latencies.clear()
        result.seconds = await closed_loop(
            send, settings.concurrency, settings.seconds, sys.maxsize, lambda _: None
        )
        return result


def request(model: Model, precision: str, settings: Settings) -> bytes:
    row = inputs(settings, 1, seed=2)[0]
    tensor = api.Tensor(shape=list(row.shape), data=row.astype("<f4").tobytes())
    version = model.versions[precision]
    message = api.ClassifyRequest(
        model="resnet18", version=version, inputs=[api.Input(tensor=tensor)], top_k=1
    )
    return message.SerializeToString()


def served_providers(address: str) -> dict[int, list[str]]:
    with grpc.insecure_channel(address) as channel:
        info = api_grpc.ClassifierStub(channel).GetModel(api.GetModelRequest(name="resnet18"))
    return {int(v.version): list(v.providers) for v in info.versions}


def served(repository: Path, model: Model, settings: Settings) -> dict[str, Any]:
    """`onyx serve` with IO binding on and with it off, both loaded, measured alternately."""
    device = ("--device", settings.device)
    with contextlib.ExitStack() as stack:
        servers = {
            binding: stack.enter_context(
                spawned_server(repository, (*device, "--io-binding", binding))
            )[0]
            for binding in ("on", "off")
        }
        providers = served_providers(servers["on"])
        results: dict[str, list[RunResult]] = {}
        for _ in range(settings.rounds):
            for precision in PRECISIONS:
                payload = request(model, precision, settings)
                for binding, address in servers.items():
                    run = asyncio.run(served_rate(address, payload, settings))
                    results.setdefault(f"{precision} binding {binding}", []).append(run)
    summary = {
        key: {
            "inputs_per_s": statistics.median(r.throughput for r in runs),
            "p50_ms": statistics.median(r.percentile_ms(50) for r in runs),
            "p99_ms": statistics.median(r.percentile_ms(99) for r in runs),
            "errors": sum(sum(r.errors.values()) for r in runs),
        }
        for key, runs in results.items()
    }
    return {"providers_by_version": providers, "c": settings.concurrency, "rates": summary}


@contextlib.contextmanager
def algo_search(value: str) -> Iterator[None]:
    """Sessions opened inside get `cudnn_conv_algo_search=value` (the bench's A/B only)."""
    saved = dict(runtime.CUDA_OPTIONS)
    runtime.CUDA_OPTIONS["cudnn_conv_algo_search"] = value
    try:
        yield
    finally:
        runtime.CUDA_OPTIONS.clear()
        runtime.CUDA_OPTIONS.update(saved)


def algorithm_search(model: Model, settings: Settings, best_batch: int) -> dict[str, Any]:
    """Per search mode, on a fresh fp32 session: ms of the first run at each new batch size
    (what a request meeting that size pays when warm-up did not cover it), then the steady
    rate at the best batch."""
    figures: dict[str, Any] = {}
    for _ in range(settings.rounds):
        for mode in ("HEURISTIC", "EXHAUSTIVE"):
            with algo_search(mode):
                fresh = session(model, "fp32", RuntimeOptions(settings.device))
            first_ms = {}
            for batch in range(1, settings.max_batch_size + 1):
                started = time.perf_counter()
                fresh.run(inputs(settings, batch))
                first_ms[batch] = (time.perf_counter() - started) * 1e3
            steady = rate(fresh.run, inputs(settings, best_batch), settings.seconds)
            entry = figures.setdefault(mode, {"first_run_ms": [], "steady_inputs_per_s": []})
            entry["first_run_ms"].append(first_ms)
            entry["steady_inputs_per_s"].append(steady)
    for entry in figures.values():
        runs = entry.pop("first_run_ms")
        entry["first_run_ms_mean"] = statistics.mean(v for r in runs for v in r.values())
        entry["first_run_ms_max"] = max(v for r in runs for v in r.values())
        entry["first_run_ms_by_batch"] = {b: statistics.median(r[b] for r in runs) for b in runs[0]}
        entry["steady_inputs_per_s"] = statistics.median(entry["steady_inputs_per_s"])
    return figures


def check(settings: Settings, work: Path) -> dict[str, Any]:
    repository = work / "models"
    model = build(repository, settings)
    chosen, reason = runtime.choose_providers(settings.device)
    sample = inputs(settings, 1)
    report: dict[str, Any] = {"settings": asdict(settings), "ort": ort.__version__}
    report["providers"] = {
        "available": ort.get_available_providers(),
        "chosen": chosen,
        "reason": reason,
        "nodes_by_provider": {
            p: nodes_by_provider(model.paths[p], chosen, sample) for p in PRECISIONS
        },
    }
    report["parity"] = parity(model, settings)
    rates = in_process(model, settings)
    report["in_process"] = rates
    report["served"] = served(repository, model, settings)
    default = "on" if runtime.uses_io_binding("auto", chosen) else "off"
    report["served_vs_in_process"] = {}
    for precision in PRECISIONS:
        batch, in_rate = best(rates, f"{precision} binding {default} ")
        serve_rate = report["served"]["rates"][f"{precision} binding {default}"]["inputs_per_s"]
        report["served_vs_in_process"][precision] = {
            "io_binding": default,
            "in_process_best_batch": batch,
            "in_process_inputs_per_s": in_rate,
            "served_inputs_per_s": serve_rate,
            "ratio": serve_rate / in_rate,
        }
    fp32_best, _ = best(rates, f"fp32 binding {default} ")
    report["cudnn_conv_algo_search"] = algorithm_search(model, settings, fp32_best)
    return report


def describe(report: dict[str, Any]) -> str:
    """The figures a closing note needs, one per line."""
    p = report["providers"]
    lines = [
        f"onnxruntime {report['ort']}; providers available {p['available']}",
        f"chosen {p['chosen']} ({p['reason']}); nodes run by provider {p['nodes_by_provider']}",
        f"served versions' providers {report['served']['providers_by_version']}",
    ]
    for precision, f in report["parity"].items():
        lines.append(
            f"parity {precision} on {f['providers'][0]} vs CPU fp32: max |diff| "
            f"{f['max_abs_diff']:.3g}, top-1 agreement {100 * f['top1_agreement']:.1f}% "
            f"({f['samples']} inputs), within {f['tolerance']}: {f['within_tolerance']}"
        )
    for precision, f in report["served_vs_in_process"].items():
        lines.append(
            f"{precision}: served c={report['served']['c']} {f['served_inputs_per_s']:.1f}/s vs "
            f"in-process best (b={f['in_process_best_batch']}) "
            f"{f['in_process_inputs_per_s']:.1f}/s: {f['ratio']:.2f}x (IO binding "
            f"{f['io_binding']})"
        )
    rates, served = report["in_process"], report["served"]["rates"]
    for precision in PRECISIONS:
        batch, on = best(rates, f"{precision} binding on ")
        off = rates[f"{precision} binding off b={batch}"]
        s_on, s_off = (served[f"{precision} binding {b}"]["inputs_per_s"] for b in ("on", "off"))
        lines.append(
            f"IO binding {precision}: in-process b={batch} on/off {on:.1f}/{off:.1f} = "
            f"{on / off:.2f}x; served {s_on:.1f}/{s_off:.1f} = {s_on / s_off:.2f}x"
        )
    for mode, f in report["cudnn_conv_algo_search"].items():
        lines.append(
            f"{mode}: first run at a new batch size mean {f['first_run_ms_mean']:.1f} ms, max "
            f"{f['first_run_ms_max']:.1f} ms; steady {f['steady_inputs_per_s']:.1f}/s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU provider")
    parser.add_argument("--seconds", type=float, help="per measurement (default: by mode)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default: by mode)")
    parser.add_argument("--out", type=Path, help="also write the report here as JSON")
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    settings = replace(
        settings, seconds=args.seconds or settings.seconds, rounds=args.rounds or settings.rounds
    )
    if settings.device == "cuda" and runtime.cuda_unavailable_reason() is not None:
        parser.error(f"no CUDA here ({runtime.cuda_unavailable_reason()}); use --smoke")
    with tempfile.TemporaryDirectory(prefix="onyx-gpu-check-") as work:
        report = check(settings, Path(work))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    print(describe(report), flush=True)
    return report


if __name__ == "__main__":
    main()
