"""Each input form obeys every limit, and client mistakes are client errors that say what is
wrong and where (issue 12), over a real server and real channels.

python -m pytest tests/serve/frontends/test_input_validation.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.serve.background import ServerThread
from onyx.serve.config import InputLimits
from tests.serve.tiny_models import write_image_model, write_text_model
from tests.serve.wire import stub

MAX_LENGTH = 16


@pytest.fixture
def address(tmp_path: Path, start_server: Callable[..., ServerThread]) -> str:
    root = tmp_path / "models"
    write_image_model(root, "tiny")
    write_text_model(root, "words", max_length=MAX_LENGTH)
    limits = InputLimits(max_request_elements=10_000)
    return start_server(root, limits=limits).address


def ids(count: int) -> bytes:
    return np.full(count, 2, dtype="<i8").tobytes()


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert "object at 0x" not in (info.value.details() or "")
    return info.value


def infer(address: str, shape: list[int], raw: bytes, version: str = "") -> grpc.RpcError:
    request = kv2.ModelInferRequest(model_name="words", model_version=version)
    request.inputs.add(name="input", datatype="INT64", shape=shape)
    request.raw_input_contents.append(raw)
    kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
    return refused(lambda: kserve.ModelInfer(request, timeout=30))


def test_raw_token_ids_past_max_length_are_refused_naming_the_limit(address: str) -> None:
    client = stub(address)
    tensor = api.Tensor(shape=[MAX_LENGTH], data=ids(MAX_LENGTH))
    ok = api.ClassifyRequest(model="words", inputs=[api.Input(tensor=tensor)])
    assert len(client.Classify(ok, timeout=30).results) == 1  # exactly max_length is fine
    long = api.Tensor(shape=[MAX_LENGTH + 1], data=ids(MAX_LENGTH + 1))
    request = api.ClassifyRequest(
        model="words", inputs=[api.Input(text="good"), api.Input(tensor=long)]
    )
    error = refused(lambda: client.Classify(request, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 1: 17 token ids" in (error.details() or "")
    assert f"text.max_length limit of {MAX_LENGTH}" in (error.details() or "")
    error = infer(address, [2, MAX_LENGTH + 1], ids(2 * (MAX_LENGTH + 1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"text.max_length limit of {MAX_LENGTH}" in (error.details() or "")


def test_shapes_are_checked_without_overflow(address: str) -> None:
    error = infer(address, [4, 2**62], b"")  # 2**64 elements: wrapped to 0 in int64
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_request_elements limit of 10000" in (error.details() or "")
    error = infer(address, [1, 0], b"")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "size < 1" in (
        error.details() or ""
    )
    tensor = api.Tensor(shape=[0], data=b"")
    request = api.ClassifyRequest(model="words", inputs=[api.Input(tensor=tensor)])
    error = refused(lambda: stub(address).Classify(request, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 0" in (error.details() or "")


@pytest.mark.parametrize("version", ["²", "①", "01", "-1", "1.0"])
def test_a_version_that_is_not_ascii_digits_is_invalid(address: str, version: str) -> None:
    error = infer(address, [1, 3], ids(3), version=version)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_invalid_utf8_text_is_invalid_argument_naming_the_input(address: str) -> None:
    good = api.ClassifyRequest(
        model="words", inputs=[api.Input(text="good"), api.Input(text="@@@@")]
    )
    data = good.SerializeToString().replace(b"@@@@", b"\xff\xfe\xc0\x80")
    channel = grpc.insecure_channel(address)
    classify = channel.unary_unary("/onyx.v1.Classifier/Classify")
    error = refused(lambda: classify(data, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[1].text is not valid UTF-8" in (error.details() or "")
    request = kv2.ModelInferRequest(model_name="words")
    request.inputs.add(name="input", datatype="BYTES", shape=[2])
    request.raw_input_contents.append(b"\x04\x00\x00\x00good\x02\x00\x00\x00\xff\xfe")
    kserve = kv2_grpc.GRPCInferenceServiceStub(channel)
    error = refused(lambda: kserve.ModelInfer(request, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 1: text is not valid UTF-8" in (error.details() or "")


def test_a_huge_model_name_is_not_echoed_back_whole(address: str) -> None:
    request = api.ClassifyRequest(model="m" * 100_000, inputs=[api.Input(text="good")])
    error = refused(lambda: stub(address).Classify(request, timeout=30))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "(100000 characters)" in (error.details() or "")
    assert len(error.details() or "") < 1000
