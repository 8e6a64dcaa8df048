from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onyx.contract.errors import ConfigError
from onyx.serve.execution import runtime
from onyx.serve.execution.runtime import CPU, CUDA, IoBinding, Session, choose_providers
from tests.serve.explain.test_explain import CHANNELS, LABELS, SIZE, gap_config, gap_graph
from tests.serve.tiny_models import image_config, image_graph, random_batch, reference


def test_cpu_is_chosen_with_a_reason_when_cuda_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cuda_unavailable_reason", lambda: "no NVIDIA driver")
    assert choose_providers("auto") == ([CPU], "no NVIDIA driver")
    assert choose_providers("cpu") == ([CPU], "--device cpu")
    with pytest.raises(ConfigError, match="--device cuda requested but no NVIDIA driver"):
        choose_providers("cuda")


def test_cuda_first_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(runtime, "_preload_cuda_libraries", lambda: None)
    assert choose_providers("auto") == ([CUDA, CPU], "CUDA available")


def test_session_runs_and_rejects_a_config_that_does_not_match(tmp_path: Path) -> None:
    onnx.save(image_graph(seed=1), str(tmp_path / "model.onnx"))
    session = Session(tmp_path / "model.onnx", image_config(), runtime.RuntimeOptions(device="cpu"))
    batch = random_batch(2)
    outputs = session.run(batch)
    assert list(outputs) == ["logits"]
    np.testing.assert_allclose(outputs["logits"], reference(batch, seed=1), rtol=1e-5, atol=1e-5)
    wrong = image_config()
    del wrong.labels[2:]
    with pytest.raises(ConfigError, match="output has 3 classes but the config lists 2"):
        Session(tmp_path / "model.onnx", wrong, runtime.RuntimeOptions(device="cpu"))
    renamed = image_config()
    renamed.input.name = "pixels"
    with pytest.raises(ConfigError, match="input 'pixels' not in the graph"):
        Session(tmp_path / "model.onnx", renamed, runtime.RuntimeOptions(device="cpu"))


@pytest.mark.parametrize("io_binding", ["off", "on"])
def test_a_model_with_two_outputs_returns_both_by_name(
    tmp_path: Path, io_binding: IoBinding
) -> None:
    """Every output the config declares comes back under its ONNX name, with its own shape:
    the logits and, for a version that explains itself, its feature map."""
    onnx.save(gap_graph(), str(tmp_path / "model.onnx"))
    options = runtime.RuntimeOptions(device="cpu", io_binding=io_binding)
    session = Session(tmp_path / "model.onnx", gap_config(), options)
    batch = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE), dtype=np.float32)
    outputs = session.run(batch)
    assert list(outputs) == ["logits", "feature_map"]
    assert outputs["feature_map"].shape == (3, CHANNELS, SIZE, SIZE)
    plain = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=[CPU])
    for name, expected in zip(outputs, plain.run(None, {"image": batch}), strict=True):
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("io_binding", ["off", "on"])
def test_outputs_the_config_does_not_declare_are_not_fetched(
    tmp_path: Path, io_binding: IoBinding
) -> None:
    """A graph may give more than the config names (here its feature map, and a scalar with no
    batch axis): only the declared logits come back, so a batch is never refused for an output
    nobody reads."""
    model = gap_graph()
    model.graph.node.append(helper.make_node("ReduceMax", ["logits"], ["peak"], keepdims=0))
    model.graph.output.append(helper.make_tensor_value_info("peak", TensorProto.FLOAT, []))
    onnx.save(model, str(tmp_path / "model.onnx"))
    config = gap_config()
    config.ClearField("explain")
    options = runtime.RuntimeOptions(device="cpu", io_binding=io_binding)
    session = Session(tmp_path / "model.onnx", config, options)
    outputs = session.run(np.zeros((2, 3, SIZE, SIZE), dtype=np.float32))
    assert list(outputs) == ["logits"] and outputs["logits"].shape == (2, len(LABELS))


def test_cuda_sessions_get_options_fit_for_dynamic_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA provider is asked for heuristic cuDNN algorithm choice (no exhaustive benchmark
    on each new batch size or sequence length) and an arena that grows by what is asked."""
    onnx.save(image_graph(seed=1), str(tmp_path / "model.onnx"))
    monkeypatch.setattr(runtime, "choose_providers", lambda _device: ([CUDA, CPU], "test"))
    asked: list[object] = []
    real = runtime.ort.InferenceSession

    def recording(path: str, sess_options: object, providers: list[object]) -> object:
        asked.extend(providers)
        return real(path, sess_options=sess_options, providers=[CPU])  # no GPU here

    monkeypatch.setattr(runtime.ort, "InferenceSession", recording)
    Session(tmp_path / "model.onnx", image_config())
    cuda_options = dict(runtime.CUDA_OPTIONS)
    assert asked == [(CUDA, cuda_options), CPU]
    assert cuda_options["cudnn_conv_algo_search"] == "HEURISTIC"
    assert cuda_options["arena_extend_strategy"] == "kSameAsRequested"


def test_pool_threads_stop_spinning_when_a_run_ends(tmp_path: Path) -> None:
    """Spinning after a run holds a core the request's answer needs (bench/README.md: the
    server's CPU per request fell by a third to a half with this)."""
    tmp_path.joinpath("model.onnx").write_bytes(image_graph().SerializeToString())
    options = runtime.RuntimeOptions(device="cpu", intra_op_threads=2)
    session = Session(tmp_path / "model.onnx", image_config(), options)
    entry = session._session.get_session_options().get_session_config_entry
    assert entry("session.force_spinning_stop") == "1"
