"""The data plane: KServe v2's operations over the repository and the pipeline, for every front end.

The KServe gRPC servicer and the REST binding are thin adapters: each decodes its wire format into
the values of `protocol.py`, calls one `DataPlane` method and encodes the answer. What a request
means is decided here once: which version answers (`parse_version`), which input it is answered
from (`chosen_input`), which outputs it gets (the model's, its top classes with the
classification extension, the `saliency` map), and the metadata, config, index and statistics
the server reports. Errors are `ServeError`s; each front end maps them to its status codes.

    dataplane = DataPlane(pipeline, limits, model_control="none")
    response = await dataplane.infer(InferenceRequest("pets", "", inputs=[tensor]), deadline=None)
    dataplane.model_metadata("pets", "")            # a ModelMetadata
"""

from __future__ import annotations

from collections.abc import Sequence

from onyx.contract.errors import InvalidInput, ModelNotFound, NotAllowed, ServeError, quoted
from onyx.contract.layout import is_version_name
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve import __version__
from onyx.serve.config import InputLimits, ModelControl
from onyx.serve.explain.classify import SALIENCY, saliency
from onyx.serve.metadata import (
    model_metadata,
    model_statistics,
    repository_index,
    triton_config,
)
from onyx.serve.pipeline import Inferred, Pipeline
from onyx.serve.protocol import (
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    ModelIndex,
    ModelMetadata,
    ModelStatistics,
    OutputTensor,
    RequestedOutput,
    ServerMetadata,
    TritonConfig,
)
from onyx.serve.repository import Model
from onyx.serve.tensors import decode_tensor, float32_tensor, output_tensor

EXTENSIONS = [
    "classification",
    "model_repository",
    "model_configuration",
    "statistics",
    "streaming",
    "binary_tensor_data",
]


class DataPlane:
    def __init__(
        self, pipeline: Pipeline, limits: InputLimits, model_control: ModelControl
    ) -> None:
        self._pipeline = pipeline
        self._repository = pipeline.repository
        self._limits = limits
        self._model_control = model_control
        # Flipped off on shutdown so load balancers stop sending before the ports close.
        self.serving = True
        # Whether every model the server is configured to load is ready (kept by the server).
        self.models_ready = True

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.serving and self.models_ready

    def model_ready(self, name: str, version: str) -> bool:
        try:
            self._repository.get(name).version(parse_version(version))
        except ServeError:
            return False
        return self.serving

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("onyx", __version__, EXTENSIONS)

    def model_metadata(self, name: str, version: str) -> ModelMetadata:
        model = self._repository.get(name)
        return model_metadata(model, _config(model, version))

    def model_config(self, name: str, version: str) -> TritonConfig:
        return triton_config(_config(self._repository.get(name), version))

    def statistics(self, name: str, version: str) -> list[ModelStatistics]:
        """Every loaded version of `name` (every model when empty), or `version` alone."""
        models = [self._repository.get(name)] if name else self._repository.models()
        return model_statistics(models, self._pipeline.statistics, parse_version(version))

    def repository_index(self, ready_only: bool = False) -> list[ModelIndex]:
        entries = repository_index(self._repository.models(), self._repository.on_disk())
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def load(self, name: str) -> None:
        self._check_explicit("load")
        if name not in self._repository.on_disk():
            raise ModelNotFound(f"no model folder {quoted(name)} in the repository")
        await self._repository.sync(name)
        self._repository.get(name).version()  # UNAVAILABLE with the reasons when none loaded

    async def unload(self, name: str) -> None:
        self._check_explicit("unload")
        await self._repository.unload(name)

    def _check_explicit(self, action: str) -> None:
        if self._model_control != "explicit":
            raise NotAllowed(
                f"explicit model {action} needs --model-control explicit "
                f"(this server runs with {self._model_control!r})"
            )

    async def infer(self, request: InferenceRequest, deadline: float | None) -> InferenceResponse:
        """Run `request` (by `deadline`, a `time.monotonic()` instant) and answer its outputs."""
        tensor = chosen_input(request.inputs)
        limits = self._limits
        return await self._pipeline.answer(
            request.model,
            parse_version(request.version),
            lambda config, encoder: decode_tensor(tensor, config, limits, encoder),
            deadline,
            offload=tensor.datatype == "BYTES",
            respond=lambda result: self._response(request, result),
        )

    def _response(self, request: InferenceRequest, result: Inferred) -> InferenceResponse:
        """The requested outputs (the model's output when none is named); the `saliency`
        output is computed on request (see `onyx.serve.explain.classify`)."""
        outputs = [self._output(wanted, result) for wanted in request.outputs] or [
            self._output(RequestedOutput(result.config.output.name), result)
        ]
        return InferenceResponse(result.model, str(result.version), request.id, outputs)

    def _output(self, wanted: RequestedOutput, result: Inferred) -> OutputTensor:
        if wanted.name == SALIENCY and wanted.name != result.config.output.name:
            return float32_tensor(SALIENCY, saliency(result, self._pipeline.explained))
        return output_tensor(wanted, result.logits, result.config)


def _config(model: Model, version: str) -> pb.ModelConfig:
    """The requested version's own config (NOT_FOUND / UNAVAILABLE as for infer)."""
    config = model.version(parse_version(version)).config
    assert config is not None  # a ready version has one
    return config


def chosen_input(inputs: Sequence[InputTensor]) -> InputTensor:
    """The input a request is answered from.

    Metadata declares the model's tensor and its BYTES alternative, both optional, and a request
    sends one of them; perf_analyzer's generated (random) data fills every declared input, so a
    request with one tensor and one BYTES input is answered from the tensor.
    """
    kinds = [tensor.datatype == "BYTES" for tensor in inputs]
    if len(inputs) == 2 and sorted(kinds) == [False, True]:
        return inputs[kinds.index(False)]
    if len(inputs) == 1:
        return inputs[0]
    raise InvalidInput(f"Onyx models take one input, the request has {len(inputs)}")


def parse_version(text: str) -> int:
    """KServe versions are strings; "" means the newest ready one (0)."""
    if not text:
        return 0
    if not is_version_name(text):
        raise InvalidInput(f"model version must be a positive integer or empty, got {quoted(text)}")
    return int(text)
