"""KServe v2 / Open Inference Protocol: `inference.GRPCInferenceService` on the Onyx port.

Standard clients work unchanged, e.g. with `tritonclient[grpc]`:

    client = tritonclient.grpc.InferenceServerClient("localhost:50051")
    x = tritonclient.grpc.InferInput("image", [1, 3, 224, 224], "FP32")
    x.set_data_from_numpy(batch)
    out = tritonclient.grpc.InferRequestedOutput("logits", class_count=3)
    client.infer("pets", [x], outputs=[out]).as_numpy("logits")   # [[b"0.91:2:cat", ...]]

ModelInfer (and the streaming ModelStreamInfer) take the model's one input as a tensor of its
dtype or as BYTES (encoded images / UTF-8 text); see `kserve_tensors.py`. They answer the model's
output tensor (raw values), or with the classification extension (output parameter
`classification` = k) BYTES strings "score:index:label" of shape [n, k], scores after the model's
output activation. Also here: ModelConfig (a Triton-shaped subset, for perf_analyzer), Triton's
statistics extension (ModelStatistics) and the model-repository extension (index, load, unload;
load/unload need `--model-control explicit`).

Metadata and config declare two inputs, each optional, of which a request sends one: the model's
tensor (e.g. "image" FP32) and its BYTES alternative ("image_bytes": encoded images; "text":
UTF-8 text), so perf_analyzer's `--input-data` can drive either path.
"""

# gRPC servicer methods must take (request, context) whether they use them or not.
# ruff: noqa: ARG002

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

import grpc

from onyx.contract.dtypes import DTYPES
from onyx.contract.errors import InvalidInput, ModelNotFound, NotAllowed, ServeError, quoted
from onyx.contract.layout import is_version_name
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve import __version__
from onyx.serve.explain.classify import SALIENCY, add_saliency
from onyx.serve.frontends.kserve_tensors import add_output, decode_tensor, raw_input
from onyx.serve.frontends.rpc import answers_errors, deadline_of, log_if_unplanned
from onyx.serve.frontends.streams import answer_concurrently
from onyx.serve.inputs import InputLimits
from onyx.serve.observers import Explained
from onyx.serve.pipeline import Inferred, Pipeline
from onyx.serve.repository import Model, ModelControl, Repository
from onyx.serve.statistics import Duration, Statistics, VersionStatistics

SERVICE_NAME = kv2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = [
    "classification",
    "model_repository",
    "model_configuration",
    "statistics",
    "streaming",
    "binary_tensor_data",
]

_STATE_NAMES: dict[int, str] = {
    api.VERSION_STATE_LOADING: "LOADING",
    api.VERSION_STATE_READY: "READY",
    api.VERSION_STATE_FAILED: "UNAVAILABLE",
    api.VERSION_STATE_UNLOADING: "UNLOADING",
}
Context: TypeAlias = grpc.aio.ServicerContext


class KServeServicer(kv2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        limits: InputLimits,
        model_control: ModelControl,
        stream_window: int,
    ) -> None:
        self._pipeline = pipeline
        self._stream_window = stream_window
        self._repository = pipeline.repository
        self._limits = limits
        self._model_control = model_control
        # Flipped off on shutdown so load balancers stop sending before the port closes.
        self.serving = True
        # Whether every model the server is configured to load is ready (kept by the server).
        self.models_ready = True

    async def ServerLive(self, request: kv2.ServerLiveRequest, context: Context) -> Any:
        return kv2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: kv2.ServerReadyRequest, context: Context) -> Any:
        return kv2.ServerReadyResponse(ready=self.serving and self.models_ready)

    @answers_errors
    async def ModelReady(self, request: kv2.ModelReadyRequest, context: Context) -> Any:
        try:
            self._repository.get(request.name).version(parse_version(request.version))
        except ServeError:
            return kv2.ModelReadyResponse(ready=False)
        return kv2.ModelReadyResponse(ready=self.serving)

    async def ServerMetadata(self, request: kv2.ServerMetadataRequest, context: Context) -> Any:
        return kv2.ServerMetadataResponse(name="onyx", version=__version__, extensions=EXTENSIONS)

    @answers_errors
    async def ModelMetadata(self, request: kv2.ModelMetadataRequest, context: Context) -> Any:
        model = self._repository.get(request.name)
        # NOT_FOUND / UNAVAILABLE as for infer; the tensors are the requested version's own.
        version = model.version(parse_version(request.version))
        assert version.config is not None
        return model_metadata(model, version.config)

    @answers_errors
    async def ModelStatistics(self, request: kv2.ModelStatisticsRequest, context: Context) -> Any:
        return model_statistics(
            self._repository, self._pipeline.statistics, request.name, request.version
        )

    @answers_errors
    async def ModelInfer(self, request: kv2.ModelInferRequest, context: Context) -> Any:
        return await self.infer(request, deadline_of(context))

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[kv2.ModelInferRequest], context: Context
    ) -> AsyncIterator[kv2.ModelStreamInferResponse]:
        deadline = deadline_of(context)

        async def answer(request: kv2.ModelInferRequest) -> kv2.ModelStreamInferResponse:
            try:
                response = await self.infer(request, deadline)
            except Exception as exc:
                log_if_unplanned(exc, f"ModelStreamInfer request {request.id!r}")
                return kv2.ModelStreamInferResponse(
                    error_message=str(exc),
                    infer_response=kv2.ModelInferResponse(
                        model_name=request.model_name, id=request.id
                    ),
                )
            return kv2.ModelStreamInferResponse(infer_response=response)

        async for response in answer_concurrently(request_iterator, answer, self._stream_window):
            yield response

    async def infer(
        self, request: kv2.ModelInferRequest, deadline: float | None
    ) -> kv2.ModelInferResponse:
        tensor, raw = chosen_input(request)
        limits = self._limits
        return await self._pipeline.answer(
            request.model_name,
            parse_version(request.model_version),
            lambda config, encoder: decode_tensor(tensor, raw, config, limits, encoder),
            deadline,
            offload=tensor.datatype == "BYTES",
            respond=lambda result: infer_response(request, result, self._pipeline.explained),
        )

    @answers_errors
    async def ModelConfig(self, request: kv2.ModelConfigRequest, context: Context) -> Any:
        model = self._repository.get(request.name)
        config = model.version(parse_version(request.version)).config
        assert config is not None
        return kv2.ModelConfigResponse(config=triton_config(config))

    @answers_errors
    async def RepositoryIndex(self, request: kv2.RepositoryIndexRequest, context: Context) -> Any:
        entries = repository_index(self._repository.models(), self._repository.on_disk())
        if request.ready:
            entries = [e for e in entries if e.state == "READY"]
        return kv2.RepositoryIndexResponse(models=entries)

    @answers_errors
    async def RepositoryModelLoad(
        self, request: kv2.RepositoryModelLoadRequest, context: Context
    ) -> Any:
        self._check_explicit("load")
        if request.model_name not in self._repository.on_disk():
            raise ModelNotFound(f"no model folder {quoted(request.model_name)} in the repository")
        await self._repository.sync(request.model_name)
        model = self._repository.get(request.model_name)
        model.version()  # answers UNAVAILABLE with the reasons when nothing loaded
        return kv2.RepositoryModelLoadResponse()

    @answers_errors
    async def RepositoryModelUnload(
        self, request: kv2.RepositoryModelUnloadRequest, context: Context
    ) -> Any:
        self._check_explicit("unload")
        await self._repository.unload(request.model_name)
        return kv2.RepositoryModelUnloadResponse()

    def _check_explicit(self, action: str) -> None:
        if self._model_control != "explicit":
            raise NotAllowed(
                f"explicit model {action} needs --model-control explicit "
                f"(this server runs with {self._model_control!r})"
            )


def infer_response(
    request: kv2.ModelInferRequest, result: Inferred, explained: Explained
) -> kv2.ModelInferResponse:
    """The requested outputs (the model's output when none is named) of one inference; the
    `saliency` output is computed on request (see explain.py)."""
    response = kv2.ModelInferResponse(
        model_name=result.model, model_version=str(result.version), id=request.id
    )
    wanted = list(request.outputs) or [
        kv2.ModelInferRequest.InferRequestedOutputTensor(name=result.config.output.name)
    ]
    for output in wanted:
        if output.name == SALIENCY and output.name != result.config.output.name:
            add_saliency(response, result, explained)
            continue
        add_output(response, output, result.outputs, result.config)
    return response


def chosen_input(
    request: kv2.ModelInferRequest,
) -> tuple[kv2.ModelInferRequest.InferInputTensor, bytes | None]:
    """The input a request is answered from, and its raw contents if sent raw.

    Metadata declares the model's tensor and its BYTES alternative, both optional, and a request
    sends one of them; perf_analyzer's generated (random) data fills every declared input, so a
    request with one tensor and one BYTES input is answered from the tensor.
    """
    inputs = list(request.inputs)
    kinds = [tensor.datatype == "BYTES" for tensor in inputs]
    if len(inputs) == 2 and sorted(kinds) == [False, True]:
        index = kinds.index(False)
    elif len(inputs) == 1:
        index = 0
    else:
        raise InvalidInput(f"Onyx models take one input, the request has {len(inputs)}")
    raw = raw_input(request)  # checks raw_input_contents has one entry per input
    return inputs[index], None if raw is None else request.raw_input_contents[index]


def bytes_input_name(config: pb.ModelConfig) -> str:
    """The name metadata gives the BYTES alternative of the model's input."""
    name = "text" if config.task == pb.TASK_TEXT else "image_bytes"
    return name if name != config.input.name else f"{name}_bytes"


def triton_config(config: pb.ModelConfig) -> kv2.ModelConfig:
    """The model's config as Triton describes one: dims without the batch axis."""
    return kv2.ModelConfig(
        name=config.name,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=config.batching.max_batch_size,
        input=[
            kv2.ModelInput(
                name=config.input.name,
                data_type=_triton_type(config.input.dtype),
                dims=list(config.input.dims[1:]),
                optional=True,
            ),
            kv2.ModelInput(
                name=bytes_input_name(config), data_type="TYPE_STRING", dims=[1], optional=True
            ),
        ],
        output=[
            kv2.ModelOutput(
                name=config.output.name,
                data_type=_triton_type(config.output.dtype),
                dims=list(config.output.dims[1:]),
            )
        ],
        dynamic_batching=kv2.ModelDynamicBatching(
            max_queue_delay_microseconds=config.batching.max_queue_delay_us
        ),
        parameters=variant_parameters(config),
    )


def variant_parameters(config: pb.ModelConfig) -> dict[str, kv2.ModelParameter]:
    """A faster variant says what it is, as Triton config parameters; other versions: none."""
    if not config.HasField("variant"):
        return {}
    precision = pb.Precision.Name(config.variant.precision).removeprefix("PRECISION_").lower()
    return {
        "onyx_variant": kv2.ModelParameter(string_value=precision),
        "onyx_variant_base_version": kv2.ModelParameter(
            string_value=str(config.variant.base_version)
        ),
    }


def _triton_type(dtype: int) -> str:
    return f"TYPE_{DTYPES[dtype].kserve}"  # protobuf takes enum values by name


def parse_version(text: str) -> int:
    """KServe versions are strings; "" means the newest ready one (0)."""
    if not text:
        return 0
    if not is_version_name(text):
        raise InvalidInput(f"model version must be a positive integer or empty, got {quoted(text)}")
    return int(text)


def model_metadata(model: Model, config: pb.ModelConfig) -> kv2.ModelMetadataResponse:
    metadata = kv2.ModelMetadataResponse.TensorMetadata
    return kv2.ModelMetadataResponse(
        name=model.name,
        versions=[
            str(v.version)
            for v in sorted(model.versions.values(), key=lambda v: v.version)
            if v.ready
        ],
        platform=PLATFORM,
        inputs=[
            metadata(
                name=config.input.name,
                datatype=DTYPES[config.input.dtype].kserve,
                shape=list(config.input.dims),
            ),
            metadata(name=bytes_input_name(config), datatype="BYTES", shape=[-1, 1]),
        ],
        outputs=[
            metadata(
                name=config.output.name,
                datatype=DTYPES[config.output.dtype].kserve,
                shape=list(config.output.dims),
            )
        ],
    )


def repository_index(
    models: Sequence[Model], on_disk: Sequence[str]
) -> list[kv2.RepositoryIndexResponse.ModelIndex]:
    """One entry per loaded model version, and one per model folder that is not loaded."""
    entry = kv2.RepositoryIndexResponse.ModelIndex
    entries = []
    for model in models:
        for v in sorted(model.versions.values(), key=lambda v: v.version):
            state = _STATE_NAMES.get(int(v.state), "UNAVAILABLE")
            entries.append(
                entry(name=model.name, version=str(v.version), state=state, reason=v.reason)
            )
        if not model.versions:
            entries.append(entry(name=model.name, state="UNAVAILABLE", reason=model.reason))
    loaded = {m.name for m in models}
    entries += [
        entry(name=n, state="UNAVAILABLE", reason="not loaded") for n in on_disk if n not in loaded
    ]
    return entries


def model_statistics(
    repository: Repository, statistics: Statistics, name: str, version: str
) -> kv2.ModelStatisticsResponse:
    """Statistics of every loaded version of `name` (every model when empty), or of `version`."""
    models = [repository.get(name)] if name else repository.models()
    wanted = parse_version(version)
    entries = []
    for model in models:
        versions = sorted(model.versions)
        if wanted:
            if wanted not in model.versions:
                raise ModelNotFound(f"model {model.name!r} has no version {wanted}")
            versions = [wanted]
        entries += [
            version_statistics(model.name, v, statistics.version(model.name, v)) for v in versions
        ]
    return kv2.ModelStatisticsResponse(model_stats=entries)


def version_statistics(name: str, version: int, stats: VersionStatistics) -> kv2.ModelStatistics:
    return kv2.ModelStatistics(
        name=name,
        version=str(version),
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=kv2.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
        batch_stats=[
            kv2.InferBatchStatistics(batch_size=size, compute_infer=_duration(duration))
            for size, duration in sorted(stats.batches.items())
        ],
    )


def _duration(duration: Duration) -> kv2.StatisticDuration:
    return kv2.StatisticDuration(count=duration.count, ns=duration.ns)
