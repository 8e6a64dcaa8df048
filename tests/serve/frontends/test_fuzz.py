"""Property-based fuzzing of every inference RPC over a real server: whatever a client sends, the
answer is OK or a client-error status, never INTERNAL or UNKNOWN, and the server stays healthy.

Hypothesis draws requests to Classify, ClassifyStream and KServe ModelInfer / ModelMetadata /
ModelReady: valid, mutated and random image bytes, any text, raw tensors of random dtypes,
shapes (zero, negative, overflowing) and byte lengths, any version string or number, names of
any length, top_k and input counts past the limits, and serialized requests with bytes flipped
(invalid UTF-8 in string fields). Runs are derandomized (the same examples in every CI run);
the long run is marked slow.

python -m pytest tests/serve/frontends/test_fuzz.py            # ~150 examples per RPC
python -m pytest tests/serve/frontends/test_fuzz.py -m slow    # ~1500
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from tests.serve.tiny_models import png_bytes, random_batch, write_image_model, write_text_model
from tests.serve.wire import tensor_request

CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
}
CLIENT_ERROR_NUMBERS = {code.value[0] for code in CLIENT_ERRORS}
TIMEOUT_S = 60.0
CLASSIFY = "/onyx.v1.Classifier/Classify"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MAX_INPUTS = 4  # the server's --max-inputs here, so "too many inputs" is cheap to draw

# --- strategies -----------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from(["tiny", "words", "nope", "", "../tiny", "tiny\x00"]),
    st.text(max_size=20),
    st.just("m" * 100_000),  # echoed back, it would exceed gRPC's metadata limit
)
version_strings = st.one_of(
    st.sampled_from(["", "1", "2", "0", "01", "-1", "²", "①", "٣", "1 ", "99999999999999999999"]),
    st.text(max_size=8),
)
dims = st.one_of(
    st.sampled_from([1, 2, 3, 8, 16, 17]),
    st.integers(-3, 64),
    st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63)]),
)
shapes = st.lists(dims, max_size=5)


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    valid = png_bytes(draw(st.integers(0, 3)), size=draw(st.sampled_from([1, 8, 9, 64])))
    kind = draw(st.sampled_from(["valid", "mutated", "truncated", "random"]))
    if kind == "valid":
        return valid
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid)))]
    if kind == "random":
        return draw(st.binary(max_size=256))
    data = bytearray(valid)
    for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


def exact_bytes(shape: list[int], itemsize: int) -> int:
    """The byte length `shape` needs, when small enough to send (else some small length)."""
    count = int(np.prod(shape, dtype=object)) if shape else 1
    return count * itemsize if 0 <= count * itemsize <= 4096 else 64


@st.composite
def raw_tensors(draw: st.DrawFn) -> api.Tensor:
    shape = draw(st.one_of(shapes, st.sampled_from([[3, 8, 8], [5], [16], [17], [1, 0], [0]])))
    itemsize = draw(st.sampled_from([1, 2, 4, 8]))
    length = draw(st.one_of(st.just(exact_bytes(shape, itemsize)), st.integers(0, 2048)))
    if shape in ([5], [16], [17]) and draw(st.booleans()):  # token ids, some out of vocabulary
        ids = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=shape[0], max_size=shape[0]))
        return api.Tensor(shape=shape, data=np.asarray(ids, dtype="<i8").tobytes())
    return api.Tensor(shape=shape, data=draw(st.binary(min_size=length, max_size=length)))


inputs = st.one_of(
    image_bytes().map(lambda data: api.Input(image=data)),
    st.text(max_size=200).map(lambda text: api.Input(text=text)),
    raw_tensors().map(lambda tensor: api.Input(tensor=tensor)),
    st.just(api.Input()),
)


@st.composite
def classify_requests(draw: st.DrawFn) -> api.ClassifyRequest:
    return api.ClassifyRequest(
        model=draw(st.one_of(st.sampled_from(["tiny", "words"]), names)),
        version=draw(st.one_of(st.sampled_from([0, 1, 2]), st.integers(-(2**63), 2**63 - 1))),
        inputs=draw(st.lists(inputs, max_size=MAX_INPUTS + 2)),
        top_k=draw(st.one_of(st.integers(-2, 5), st.integers(-(2**31), 2**31 - 1))),
    )


KSERVE_TYPES = ["FP32", "INT64", "BYTES", "INT32", "FP16", "BOOL", "UINT64", "FP64", ""]


@st.composite
def infer_tensors(draw: st.DrawFn) -> tuple[kv2.ModelInferRequest.InferInputTensor, bytes | None]:
    datatype = draw(st.one_of(st.sampled_from(KSERVE_TYPES), st.text(max_size=6)))
    shape = draw(st.one_of(shapes, st.sampled_from([[1, 3, 8, 8], [2, 5], [1, 17], [2], [1, 0]])))
    tensor = kv2.ModelInferRequest.InferInputTensor(
        name=draw(st.one_of(st.sampled_from(["image", "input"]), st.text(max_size=8))),
        datatype=datatype,
        shape=shape,
    )
    how = draw(st.sampled_from(["raw", "raw_exact", "contents", "bytes"]))
    if how == "raw":
        return tensor, draw(st.binary(max_size=2048))
    if how == "raw_exact":
        size = exact_bytes(shape, 4 if datatype in ("FP32", "INT32") else 8)
        return tensor, draw(st.binary(min_size=size, max_size=size))
    if how == "contents":
        values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=65))
        tensor.contents.int64_contents.extend(values)
        tensor.contents.fp32_contents.extend(float(v % 1000) for v in values)
        return tensor, None
    items = draw(
        st.lists(st.one_of(image_bytes(), st.binary(max_size=64), st.text().map(str.encode)),
                 max_size=3)
    )  # fmt: skip
    raw = b"".join(struct.pack("<I", len(i)) + i for i in items)
    return tensor, raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw


@st.composite
def infer_requests(draw: st.DrawFn) -> kv2.ModelInferRequest:
    drawn = draw(st.lists(infer_tensors(), max_size=2))
    request = kv2.ModelInferRequest(
        model_name=draw(st.one_of(st.sampled_from(["tiny", "words"]), names)),
        model_version=draw(version_strings),
        inputs=[tensor for tensor, _ in drawn],
    )
    raws = [raw for _, raw in drawn if raw is not None]
    if raws and draw(st.booleans()):
        request.raw_input_contents.extend(raws)
    for _ in range(draw(st.integers(0, 2))):
        output = request.outputs.add(name=draw(st.sampled_from(["logits", "scores", ""])))
        if draw(st.booleans()):
            output.parameters["classification"].int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    return request


@st.composite
def mutated(draw: st.DrawFn, messages: st.SearchStrategy[Any]) -> bytes:
    """A serialized request with some bytes replaced (invalid UTF-8, broken lengths, ...)."""
    data = bytearray(draw(messages).SerializeToString())
    if data:
        for position in draw(st.lists(st.integers(0, len(data) - 1), max_size=4)):
            data[position] = draw(st.sampled_from([0xFF, 0xC0, 0x80, 0x00, 0x7F]))
    return bytes(data)


# --- the server and the checks ----------------------------------------------------------------


def fuzz_repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_image_model(root, "tiny")
    write_text_model(root, "words", max_length=16)
    return root


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        assert "object at 0x" not in (exc.details() or ""), exc.details()
        assert len(exc.details() or "") < 4096, "error messages stay short"
        return code
    return grpc.StatusCode.OK


class Rpcs:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.onyx = api_grpc.ClassifierStub(self.channel)
        self.kserve = kv2_grpc.GRPCInferenceServiceStub(self.channel)
        identity: Callable[[bytes], bytes] = lambda data: data  # noqa: E731
        self.raw = {
            method: self.channel.unary_unary(method, identity, identity)
            for method in (CLASSIFY, MODEL_INFER)
        }

    def check_healthy(self) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        response = self.onyx.Classify(tensor_request(random_batch(2)), timeout=TIMEOUT_S)
        assert len(response.results) == 2
        words = api.ClassifyRequest(model="words", inputs=[api.Input(text="not good")])
        assert len(self.onyx.Classify(words, timeout=TIMEOUT_S).results) == 1


def fuzz(rpcs: Rpcs, max_examples: int) -> None:
    config = settings(
        max_examples=max_examples,
        derandomize=True,  # the same examples every run: CI is reproducible
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

    @config
    @given(classify_requests())
    def classify(request: api.ClassifyRequest) -> None:
        code = code_of(lambda: rpcs.onyx.Classify(request, timeout=TIMEOUT_S))
        assert code in CLIENT_ERRORS, (code, request.model[:50], request.version)

    @config
    @given(st.lists(classify_requests(), min_size=1, max_size=3))
    def classify_stream(requests: list[api.ClassifyRequest]) -> None:
        items = [api.ClassifyStreamRequest(id=str(i), request=r) for i, r in enumerate(requests)]
        answers = list(rpcs.onyx.ClassifyStream(iter(items), timeout=TIMEOUT_S))
        assert sorted(a.id for a in answers) == [str(i) for i in range(len(items))]
        for answer in answers:
            assert answer.error_code in CLIENT_ERROR_NUMBERS, answer.error_message[:200]

    @config
    @given(infer_requests())
    def model_infer(request: kv2.ModelInferRequest) -> None:
        code = code_of(lambda: rpcs.kserve.ModelInfer(request, timeout=TIMEOUT_S))
        assert code in CLIENT_ERRORS, (code, request.model_version)

    @config
    @given(names, version_strings)
    def model_metadata_and_ready(name: str, version: str) -> None:
        metadata = kv2.ModelMetadataRequest(name=name, version=version)
        code = code_of(lambda: rpcs.kserve.ModelMetadata(metadata, timeout=TIMEOUT_S))
        assert code in CLIENT_ERRORS, (code, name[:50], version)
        ready = kv2.ModelReadyRequest(name=name, version=version)
        assert code_of(lambda: rpcs.kserve.ModelReady(ready, timeout=TIMEOUT_S)) in CLIENT_ERRORS

    @config
    @given(st.one_of(mutated(classify_requests()), mutated(infer_requests())), st.booleans())
    def mutated_bytes(data: bytes, onyx: bool) -> None:
        method = (
            "/onyx.v1.Classifier/Classify" if onyx else "/inference.GRPCInferenceService/ModelInfer"
        )
        code = code_of(lambda: rpcs.raw[method](data, timeout=TIMEOUT_S))
        assert code in CLIENT_ERRORS, code

    for run in (classify, classify_stream, model_infer, model_metadata_and_ready, mutated_bytes):
        run()
        rpcs.check_healthy()


def test_no_client_input_reaches_internal_or_unknown(
    tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(fuzz_repository(tmp_path), limits=_limits())
    fuzz(Rpcs(server.address), max_examples=120)


@pytest.mark.slow
def test_no_client_input_reaches_internal_or_unknown_long_run(
    tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(fuzz_repository(tmp_path), limits=_limits())
    fuzz(Rpcs(server.address), max_examples=1000)


def _limits() -> Any:
    from onyx.serve.config import InputLimits

    return InputLimits(max_inputs_per_request=MAX_INPUTS, max_request_elements=4096)
