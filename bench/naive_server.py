"""The naive baseline: a KServe v2 gRPC server that runs ONNX Runtime once per request.

    python bench/naive_server.py MODEL_FILE PORT [--threads N]

What a team writes in an afternoon, speaking the same API as Onyx and Triton: ModelInfer reads
the request's one raw input tensor, `session.run`s it in a thread and answers the raw output
tensor. No batching, queue, versions, limits or metrics; ONNX Runtime's own threading defaults
unless --threads is given. It also answers what a load generator asks before it starts
(ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelConfig: Triton's
`perf_analyzer` reads the tensors from them), describing the ONNX file's first input and output
for any model name.
`bench/small_models.py` starts it beside Onyx on the same model file.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from onyx.proto.kserve import grpc_service_pb2 as kv2

SERVICE = "inference.GRPCInferenceService"
DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}
DATATYPES = {np.dtype(v).str: k for k, v in DTYPES.items()}
ONNX_TYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
              "tensor(uint8)": "UINT8"}  # fmt: skip
# The batch axis is the first; the server takes any count, so clients may send up to this.
MAX_BATCH_SIZE = 16


def dims(node: Any) -> list[int]:
    """An ONNX input/output's shape, -1 where it is symbolic."""
    return [d if isinstance(d, int) else -1 for d in node.shape]


def model_metadata(session: ort.InferenceSession, name: str) -> kv2.ModelMetadataResponse:
    tensor = kv2.ModelMetadataResponse.TensorMetadata
    return kv2.ModelMetadataResponse(
        name=name, versions=["1"], platform="onnxruntime_onnx",
        inputs=[tensor(name=i.name, datatype=ONNX_TYPES[i.type], shape=dims(i))
                for i in session.get_inputs()[:1]],
        outputs=[tensor(name=o.name, datatype=ONNX_TYPES[o.type], shape=dims(o))
                 for o in session.get_outputs()[:1]],
    )  # fmt: skip


def model_config(session: ort.InferenceSession, name: str) -> kv2.ModelConfigResponse:
    """Triton's description: dims without the batch axis, types as TYPE_<datatype>."""
    (i,), (o,) = session.get_inputs()[:1], session.get_outputs()[:1]
    config = kv2.ModelConfig(
        name=name, platform="onnxruntime_onnx", backend="onnxruntime",
        max_batch_size=MAX_BATCH_SIZE,
        input=[kv2.ModelInput(name=i.name, data_type=f"TYPE_{ONNX_TYPES[i.type]}",
                              dims=dims(i)[1:])],
        output=[kv2.ModelOutput(name=o.name, data_type=f"TYPE_{ONNX_TYPES[o.type]}",
                                dims=dims(o)[1:])],
    )  # fmt: skip
    return kv2.ModelConfigResponse(config=config)


def handlers(session: ort.InferenceSession, pool: ThreadPoolExecutor) -> grpc.GenericRpcHandler:
    input_name = session.get_inputs()[0].name

    async def infer(request: kv2.ModelInferRequest, _: Any) -> kv2.ModelInferResponse:
        spec = request.inputs[0]
        array = np.frombuffer(request.raw_input_contents[0], DTYPES[spec.datatype])
        feed = {input_name: array.reshape(tuple(spec.shape))}
        loop = asyncio.get_running_loop()
        (output, *_) = await loop.run_in_executor(pool, session.run, None, feed)
        output = np.ascontiguousarray(output)
        tensor = kv2.ModelInferResponse.InferOutputTensor(
            name="output", datatype=DATATYPES.get(output.dtype.str, "FP32"), shape=output.shape
        )
        return kv2.ModelInferResponse(
            model_name=request.model_name, outputs=[tensor], raw_output_contents=[output.tobytes()]
        )

    async def live(_: Any, __: Any) -> kv2.ServerLiveResponse:
        return kv2.ServerLiveResponse(live=True)

    async def ready(_: Any, __: Any) -> kv2.ServerReadyResponse:
        return kv2.ServerReadyResponse(ready=True)

    async def server_metadata(_: Any, __: Any) -> kv2.ServerMetadataResponse:
        return kv2.ServerMetadataResponse(name="naive", version="1")

    async def model_ready(_: Any, __: Any) -> kv2.ModelReadyResponse:
        return kv2.ModelReadyResponse(ready=True)

    async def metadata(request: Any, _: Any) -> kv2.ModelMetadataResponse:
        return model_metadata(session, request.name)

    async def config(request: Any, _: Any) -> kv2.ModelConfigResponse:
        return model_config(session, request.name)

    methods: dict[str, tuple[Callable[[Any, Any], Awaitable[Any]], Any]] = {
        "ModelInfer": (infer, kv2.ModelInferRequest),
        "ServerLive": (live, kv2.ServerLiveRequest),
        "ServerReady": (ready, kv2.ServerReadyRequest),
        "ServerMetadata": (server_metadata, kv2.ServerMetadataRequest),
        "ModelReady": (model_ready, kv2.ModelReadyRequest),
        "ModelMetadata": (metadata, kv2.ModelMetadataRequest),
        "ModelConfig": (config, kv2.ModelConfigRequest),
    }
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                function,
                request_deserializer=message.FromString,
                response_serializer=lambda response: response.SerializeToString(),
            )
            for name, (function, message) in methods.items()
        },
    )


async def serve(model_file: Path, port: int, threads: int) -> None:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
    )
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((handlers(session, ThreadPoolExecutor(1)),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ORT's)")
    args = parser.parse_args()
    asyncio.run(serve(args.model_file, args.port, args.threads))


if __name__ == "__main__":
    main()
