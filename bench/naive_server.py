"""The naive baseline: a KServe v2 gRPC server that runs ONNX Runtime once per request.

    python bench/naive_server.py MODEL_FILE PORT [--threads N]

What a team writes in an afternoon, speaking the same API as Onyx and Triton (ModelInfer only):
read the request's one raw input tensor, `session.run` it in a thread, answer the raw output
tensor. No batching, queue, versions, limits or metrics; ONNX Runtime's own threading defaults
unless --threads is given. `bench/small_models.py` starts it beside Onyx on the same model file.
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from onyx.proto.kserve import grpc_service_pb2 as kv2

METHOD = "/inference.GRPCInferenceService/ModelInfer"
DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}
DATATYPES = {np.dtype(v).str: k for k, v in DTYPES.items()}


async def serve(model_file: Path, port: int, threads: int) -> None:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    pool = ThreadPoolExecutor(1)

    async def infer(
        request: kv2.ModelInferRequest, _: grpc.aio.ServicerContext
    ) -> kv2.ModelInferResponse:
        spec = request.inputs[0]
        array = np.frombuffer(request.raw_input_contents[0], DTYPES[spec.datatype])
        feed = {input_name: array.reshape(tuple(spec.shape))}
        loop = asyncio.get_running_loop()
        (output,) = await loop.run_in_executor(pool, session.run, None, feed)
        output = np.ascontiguousarray(output)
        tensor = kv2.ModelInferResponse.InferOutputTensor(
            name="output", datatype=DATATYPES.get(output.dtype.str, "FP32"), shape=output.shape
        )
        return kv2.ModelInferResponse(
            model_name=request.model_name, outputs=[tensor], raw_output_contents=[output.tobytes()]
        )

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    handler = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=kv2.ModelInferRequest.FromString,
        response_serializer=kv2.ModelInferResponse.SerializeToString,
    )
    service, method = METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {method: handler}),)
    )
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
