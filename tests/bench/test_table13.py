"""bench/table13.py (issue 13's table) and its pieces, for real: the digits CNN Onyx serves, the
quick table end to end, perf_analyzer driving the naive server with the workload's own inputs,
and (where `bench/setup_triton.sh` was run) the pytriton peer answering."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from bench import small_models, table13
from bench.make_models import DigitsNet, make_digits
from bench.perf_client import PerfAnalyzer, input_data
from bench.small_models import TRITON_PYTHON, Workload, image_workload, started
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from tests.serve.tiny_models import write_image_model
from tests.tools import missing_tool


def infer(address: str, model: str, batch: np.ndarray, input_name: str = "input") -> np.ndarray:
    request = kv2.ModelInferRequest(
        model_name=model,
        inputs=[kv2.ModelInferRequest.InferInputTensor(
            name=input_name, datatype="FP32", shape=list(batch.shape))],
        raw_input_contents=[batch.tobytes()],
    )  # fmt: skip
    with grpc.insecure_channel(address) as channel:
        answer = kv2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    shape = tuple(answer.outputs[0].shape)
    return np.frombuffer(answer.raw_output_contents[0], np.float32).reshape(shape)


def test_onyx_serves_the_digits_cnn_as_torch_computes_it(tmp_path: Path) -> None:
    model_file = make_digits(tmp_path, max_batch_size=16)
    assert model_file == tmp_path / "digits" / "1" / "model.onnx"
    batch = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, metrics=False)
    with ServerThread(config) as server:
        served = infer(server.address, "digits", batch)
    torch.manual_seed(0)  # the weights make_digits drew
    with torch.no_grad():
        expected = DigitsNet().eval()(torch.from_numpy(batch)).numpy()
    assert served.shape == (3, 10)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)


def test_perf_analyzer_input_data_keeps_each_requests_own_shape(tmp_path: Path) -> None:
    inputs = [np.arange(n, dtype=np.int64)[None] for n in (5, 9)]
    workload = Workload("text", Path("m.onnx"), tmp_path, "input", inputs)
    steps = json.loads(input_data(workload, tmp_path / "in.json").read_text())["data"]
    assert [step["input"]["shape"] for step in steps] == [[5], [9]]
    decoded = [np.frombuffer(base64.b64decode(s["input"]["content"]["b64"]), np.int64)
               for s in steps]  # fmt: skip
    assert [d.tolist() for d in decoded] == [list(range(5)), list(range(9))]


def test_levels_can_be_overridden_per_model_and_unknown_models_are_refused() -> None:
    levels = table13.parse_levels("digits=2,4", ["text", "digits"])
    assert levels == {"text": [1, 8, 32], "digits": [2, 4]}
    with pytest.raises(SystemExit, match="resnet18"):
        table13.parse_levels("resnet18=1", ["text", "digits"])


@pytest.mark.slow
def test_quick_table_runs_end_to_end_and_prints_a_row_per_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "table.json"
    argv = ["--models", "digits", "--servers", "onyx,naive", "--client", "python",
            "-c", "digits=2", "--quick", "--out", str(out)]  # fmt: skip
    table13.main(argv)
    printed = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines() if "|" in line}
    for name in ("onyx (python)", "naive (python)", "**onyx ÷ naive** (python)"):
        assert name in rows, printed
    assert "not available" not in printed
    samples = json.loads(out.read_text())["samples"]
    assert [(s["server"], s["concurrency"]) for s in samples] == [("onyx", 2), ("naive", 2)]
    assert all(s["rate"] > 10 and 0 < s["p50_ms"] <= s["p99_ms"] for s in samples)


@pytest.fixture
def tiny(tmp_path: Path) -> Workload:
    write_image_model(tmp_path)
    return image_workload(tmp_path, "tiny", 4)


@pytest.fixture
def naive(tiny: Workload, tmp_path: Path) -> Iterator[str]:
    with started("naive", tiny, tmp_path / "naive.log") as address:
        yield address


@pytest.mark.slow
def test_perf_analyzer_drives_the_naive_server(tiny: Workload, naive: str, tmp_path: Path) -> None:
    try:
        client = PerfAnalyzer.found(tmp_path)
    except SystemExit as exc:  # libb64 / libcudart missing: an optional tool on this machine
        missing_tool(str(exc))
    load = client.closed_loop(naive, tiny, clients=2, seconds=0.6)
    assert load.rate > 10
    assert 0 < load.p50_ms <= load.p99_ms
    with pytest.raises(RuntimeError, match=r"perf_analyzer tiny c=1 at 127\.0\.0\.1:1: \S"):
        client.closed_loop("127.0.0.1:1", tiny, clients=1, seconds=0.3)  # nothing listens


@pytest.mark.slow
def test_the_pytriton_peer_answers_as_onnx_runtime_does(tiny: Workload, tmp_path: Path) -> None:
    if not TRITON_PYTHON.exists():
        pytest.skip(f"no {TRITON_PYTHON}: the Triton peer is set up by bench/setup_triton.sh")
    batch = tiny.inputs[0]
    with started("triton", tiny, tmp_path / "triton.log") as address:
        served = infer(address, "tiny", batch, tiny.input_name)
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny.model_file), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {tiny.input_name: batch})[:1]
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


def test_a_triton_peer_not_set_up_is_reported_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table13, "TRITON_PYTHON", tmp_path / "absent" / "python")
    plan, _ = table13.parse_plan(["--servers", "onyx,triton", "--client", "python"])
    results = table13.Results()
    servers, clients, perf = table13.available(plan, tmp_path, results)
    assert (servers, clients, perf) == (["onyx"], ["python"], None)
    assert "bench/setup_triton.sh" in results.unavailable["triton"]


def test_a_peer_that_exits_at_start_is_reported_with_its_reason(
    tiny: Workload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(small_models, "TRITON_PYTHON", Path("/bin/false"))
    results = table13.Results()
    with contextlib.ExitStack() as stack:
        addresses = table13.start_servers(stack, ["naive", "triton"], tiny, tmp_path, results)
    assert list(addresses) == ["naive"]
    assert results.unavailable["triton"].startswith("triton not ready (exit 1)")
