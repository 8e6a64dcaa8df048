"""Triton as a peer: an ONNX Runtime session behind pytriton's `@batch`, with Triton's dynamic
batcher, serving KServe v2 gRPC.

    bench/setup_triton.sh                                   # once: makes .bench-venv/triton
    .bench-venv/triton/bin/python bench/triton_server.py MODEL_FILE PORT --name text

Runs in its own virtualenv (nvidia-pytriton, onnxruntime, numpy), so it imports nothing from
Onyx. The model is bound under `--name` with the ONNX file's own input and output (names and
dtypes; every axis but the batch axis variable), `max_batch_size` 16 and a queue delay of 0 like
Onyx's benchmark config; ONNX Runtime keeps its threading defaults, as the naive server does.
Triton's dynamic batcher only puts requests of the same shape in one batch (no ragged batching
here), so variable-length text mostly runs one sequence per batch, as Triton users get by
default. Prints "triton serving" on stderr once the model is ready; `bench/small_models.py`
starts it beside Onyx and waits for that line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

READY = "triton serving"
NUMPY = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def infer_function(session: ort.InferenceSession) -> Any:
    from pytriton.decorators import batch  # type: ignore[import-not-found]

    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    @batch  # type: ignore[misc, untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (output,) = session.run([output_name], {input_name: inputs[input_name]})
        return {output_name: output}

    return infer


def tensors(specs: list[Any]) -> list[Any]:
    from pytriton.model_config import Tensor  # type: ignore[import-not-found]

    # Shapes without the batch axis; -1 where the ONNX file's axis is symbolic.
    return [
        Tensor(
            name=s.name,
            dtype=NUMPY[s.type],
            shape=tuple(d if isinstance(d, int) else -1 for d in s.shape[1:]),
        )
        for s in specs
    ]


def serve(model_file: Path, port: int, name: str, max_batch_size: int) -> None:
    # Installed only in .bench-venv/triton (bench/setup_triton.sh), never in the project's venv.
    from pytriton.model_config import (  # type: ignore[import-not-found]
        DynamicBatcher,
        ModelConfig,
    )
    from pytriton.triton import (  # type: ignore[import-not-found]
        Triton,
        TritonConfig,
        TritonSecurityConfig,
    )

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    config = TritonConfig(
        grpc_address="127.0.0.1", grpc_port=port, allow_http=False, allow_metrics=False
    )
    # pytriton guards statistics and the like with a token perf_analyzer does not send; this
    # server listens on 127.0.0.1 only, for benchmarks.
    security = TritonSecurityConfig(restricted_endpoints=[])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=name,
            infer_func=infer_function(session),
            inputs=tensors(session.get_inputs()[:1]),
            outputs=tensors(session.get_outputs()[:1]),
            config=ModelConfig(
                max_batch_size=max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=0),
            ),
            strict=False,
        )
        triton.run()
        print(READY, file=sys.stderr, flush=True)
        triton.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--name", default="model", help="the model's name for clients")
    parser.add_argument("--max-batch-size", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    serve(args.model_file, args.port, args.name, args.max_batch_size)


if __name__ == "__main__":
    main()
