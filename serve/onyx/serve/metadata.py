"""What the server says about its models: metadata, Triton's config, the index and statistics.

Each is a `protocol.py` value (KServe v2's message, wire-free), built from the repository and the
pipeline's `Statistics` for the data plane to answer.

Metadata and config declare two inputs, each optional, of which a request sends one: the model's
tensor (e.g. "image" FP32) and its BYTES alternative ("image_bytes": encoded images; "text":
UTF-8 text), so perf_analyzer's `--input-data` can drive either path.

    model_metadata(model, config)       # ModelMetadata: the version's own tensors
    triton_config(config)               # TritonConfig: dims without the batch axis
"""

from __future__ import annotations

from collections.abc import Sequence

from onyx.contract.dtypes import DTYPES
from onyx.contract.errors import ModelNotFound
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.protocol import (
    DynamicBatching,
    InferBatchStatistics,
    InferStatistics,
    ModelIndex,
    ModelMetadata,
    ModelParameter,
    ModelStatistics,
    StatisticDuration,
    TensorMetadata,
    TritonConfig,
    TritonInput,
    TritonOutput,
)
from onyx.serve.repository import Model
from onyx.serve.statistics import Duration, Statistics, VersionStatistics

PLATFORM = "onnxruntime_onnx"
_STATE_NAMES: dict[int, str] = {
    api.VERSION_STATE_LOADING: "LOADING",
    api.VERSION_STATE_READY: "READY",
    api.VERSION_STATE_FAILED: "UNAVAILABLE",
    api.VERSION_STATE_UNLOADING: "UNLOADING",
}


def bytes_input_name(config: pb.ModelConfig) -> str:
    """The name metadata gives the BYTES alternative of the model's input."""
    name = "text" if config.task == pb.TASK_TEXT else "image_bytes"
    return name if name != config.input.name else f"{name}_bytes"


def model_metadata(model: Model, config: pb.ModelConfig) -> ModelMetadata:
    """`model`'s ready versions, and the tensors of the version whose `config` this is."""
    versions = sorted(model.versions.values(), key=lambda v: v.version)
    return ModelMetadata(
        name=model.name,
        versions=[str(v.version) for v in versions if v.ready],
        platform=PLATFORM,
        inputs=[
            _tensor(config.input),
            TensorMetadata(name=bytes_input_name(config), datatype="BYTES", shape=[-1, 1]),
        ],
        outputs=[_tensor(config.output)],
    )


def _tensor(spec: pb.TensorSpec) -> TensorMetadata:
    return TensorMetadata(name=spec.name, datatype=DTYPES[spec.dtype].kserve, shape=list(spec.dims))


def triton_config(config: pb.ModelConfig) -> TritonConfig:
    """The model's config as Triton describes one: dims without the batch axis."""
    return TritonConfig(
        name=config.name,
        platform=PLATFORM,
        max_batch_size=config.batching.max_batch_size,
        input=[
            TritonInput(
                name=config.input.name,
                data_type=_triton_type(config.input.dtype),
                dims=list(config.input.dims[1:]),
                optional=True,
            ),
            TritonInput(
                name=bytes_input_name(config), data_type="TYPE_STRING", dims=[1], optional=True
            ),
        ],
        output=[
            TritonOutput(
                name=config.output.name,
                data_type=_triton_type(config.output.dtype),
                dims=list(config.output.dims[1:]),
            )
        ],
        dynamic_batching=DynamicBatching(config.batching.max_queue_delay_us),
        parameters=variant_parameters(config),
        backend="onnxruntime",
    )


def variant_parameters(config: pb.ModelConfig) -> dict[str, ModelParameter]:
    """A faster variant says what it is, as Triton config parameters; other versions: none."""
    if not config.HasField("variant"):
        return {}
    precision = pb.Precision.Name(config.variant.precision).removeprefix("PRECISION_").lower()
    return {
        "onyx_variant": ModelParameter(precision),
        "onyx_variant_base_version": ModelParameter(str(config.variant.base_version)),
    }


def _triton_type(dtype: int) -> str:
    return f"TYPE_{DTYPES[dtype].kserve}"


def repository_index(models: Sequence[Model], on_disk: Sequence[str]) -> list[ModelIndex]:
    """One entry per loaded model version, and one per model folder that is not loaded."""
    entries = []
    for model in models:
        for v in sorted(model.versions.values(), key=lambda v: v.version):
            state = _STATE_NAMES.get(int(v.state), "UNAVAILABLE")
            entries.append(ModelIndex(model.name, str(v.version), state, v.reason))
        if not model.versions:
            entries.append(ModelIndex(model.name, "", "UNAVAILABLE", model.reason))
    loaded = {m.name for m in models}
    entries += [ModelIndex(n, "", "UNAVAILABLE", "not loaded") for n in on_disk if n not in loaded]
    return entries


def model_statistics(
    models: Sequence[Model], statistics: Statistics, wanted: int
) -> list[ModelStatistics]:
    """Statistics of every loaded version of `models`, or of version `wanted` (0: all)."""
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
    return entries


def version_statistics(name: str, version: int, stats: VersionStatistics) -> ModelStatistics:
    return ModelStatistics(
        name=name,
        version=str(version),
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
        batch_stats=[_batch(size, duration) for size, duration in sorted(stats.batches.items())],
    )


def _batch(size: int, compute_infer: Duration) -> InferBatchStatistics:
    """Only the model's time is taken per batch size."""
    none = StatisticDuration()
    return InferBatchStatistics(size, none, _duration(compute_infer), none)


def _duration(duration: Duration) -> StatisticDuration:
    return StatisticDuration(count=duration.count, ns=duration.ns)
