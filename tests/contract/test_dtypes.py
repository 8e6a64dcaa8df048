from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from onyx.contract.dtypes import DTYPES, wire_dtype
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.v1 import model_config_pb2 as pb
from tests.serve.tiny_models import IR_VERSION, OPSET

EVERY_DTYPE = [v for v in pb.DataType.values() if v != pb.DATA_TYPE_UNSPECIFIED]


def test_every_config_dtype_has_exactly_one_row() -> None:
    assert sorted(DTYPES) == sorted(EVERY_DTYPE)


@pytest.mark.parametrize("field", ["numpy", "kserve", "onnx"])
def test_every_name_leads_back_to_its_dtype(field: str) -> None:
    """Each column is one-to-one, so a name read off the wire or a graph means one dtype."""
    back = {getattr(row, field): code for code, row in DTYPES.items()}
    for code in EVERY_DTYPE:
        assert back[getattr(DTYPES[code], field)] == code


@pytest.mark.parametrize("code", EVERY_DTYPE, ids=pb.DataType.Name)
def test_kserve_names_are_the_protocols_own(code: int) -> None:
    row = DTYPES[code]
    kv2.DataType.Value(f"TYPE_{row.kserve}")  # Triton's config enum: raises if unknown
    if row.kserve_contents is not None:
        assert row.kserve_contents in kv2.InferTensorContents.DESCRIPTOR.fields_by_name
        contents = kv2.InferTensorContents()
        getattr(contents, row.kserve_contents).append(3)
        assert np.asarray(getattr(contents, row.kserve_contents), dtype=row.numpy).tolist() == [3]


@pytest.mark.parametrize("code", EVERY_DTYPE, ids=pb.DataType.Name)
def test_onnx_runtime_reports_and_returns_each_dtype(code: int) -> None:
    row = DTYPES[code]
    element = helper.np_dtype_to_tensor_dtype(np.dtype(row.numpy))
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", element, [None, 2])],
        [helper.make_tensor_value_info("y", element, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == row.onnx
    assert session.get_outputs()[0].type == row.onnx
    (out,) = session.run(["y"], {"x": np.arange(4, dtype=row.numpy).reshape(2, 2)})
    assert out.dtype == np.dtype(row.numpy)
    assert out.ravel().tolist() == [0, 1, 2, 3]


def test_wire_dtypes_are_little_endian() -> None:
    assert {wire_dtype(code).str[0] for code in EVERY_DTYPE} <= {"<", "|"}
    assert wire_dtype(pb.DATA_TYPE_FLOAT32) == np.dtype("<f4")
