"""Which static int8 format is fastest on this CPU: QDQ vs QOperator, U8S8 vs S8S8, vs fp32.

    python bench/quant_formats.py                # ResNet18 (random weights), batch 1 and 8
    python bench/quant_formats.py --rounds 5 --batches 1,8,16

Exports ResNet18 once, quantizes it four ways with the same calibration batches
(`onyx.train.export.quantize`), then times every file in-process, interleaved round by round
(fp32, QDQ U8S8, QDQ S8S8, QOperator U8S8, QOperator S8S8, fp32, ...) so that background load
hits all of them alike. Prints images/s per format and batch size, and the ratio to fp32 (the
median over rounds). Speed does not depend on the weights, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torchvision.models import resnet18

from onyx.train.export import export_onnx
from onyx.train.export.quantize import Int8Format, prepare_for_quantization, quantize_int8_static

FORMATS = (
    Int8Format("qdq", "uint8"),
    Int8Format("qdq", "int8"),
    Int8Format("qoperator", "uint8"),
    Int8Format("qoperator", "int8"),
)


def build_files(work: Path, calibration_batches: int) -> dict[str, Path]:
    torch.manual_seed(0)
    fp32 = work / "fp32.onnx"
    export_onnx(resnet18(weights=None).eval(), torch.randn(2, 3, 224, 224), fp32, opset=18)
    prepared = work / "prepared.onnx"
    prepare_for_quantization(fp32, prepared)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((8, 3, 224, 224), dtype=np.float32)] * calibration_batches
    files = {"fp32": fp32}
    for fmt in FORMATS:
        path = work / f"{fmt.layout}_{fmt.activations}.onnx"
        quantize_int8_static(prepared, path, "input", batches, fmt)
        files[fmt.describe()] = path
    return files


def images_per_second(session: ort.InferenceSession, batch: np.ndarray, seconds: float) -> float:
    session.run(None, {"input": batch})  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"input": batch})
        done += len(batch)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=2.0, help="per file, batch and round")
    parser.add_argument("--calibration-batches", type=int, default=4)
    args = parser.parse_args()
    sizes = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as work:
        files = build_files(Path(work), args.calibration_batches)
        sessions = {
            name: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
            for name, p in files.items()
        }
        rng = np.random.default_rng(1)
        for size in sizes:
            batch = rng.standard_normal((size, 3, 224, 224), dtype=np.float32)
            rates: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(args.rounds):
                for name, session in sessions.items():
                    rates[name].append(images_per_second(session, batch, args.seconds))
            report(size, rates)


def report(size: int, rates: dict[str, list[float]]) -> None:
    fp32 = rates["fp32"]
    print(f"batch {size}:")
    for name, values in rates.items():
        ratios = [v / f for v, f in zip(values, fp32, strict=True)]
        print(
            f"  {name:16s} {statistics.median(values):8.1f} img/s   "
            f"x{statistics.median(ratios):.2f} vs fp32 (rounds: "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + ")"
        )


if __name__ == "__main__":
    main()
