from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onyx.serve import runtime
from onyx.serve.errors import ConfigError
from onyx.serve.runtime import CPU, CUDA, Session, choose_providers
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
    np.testing.assert_allclose(session.run(batch), reference(batch, seed=1), rtol=1e-5, atol=1e-5)
    wrong = image_config()
    del wrong.labels[2:]
    with pytest.raises(ConfigError, match="output has 3 classes but the config lists 2"):
        Session(tmp_path / "model.onnx", wrong, runtime.RuntimeOptions(device="cpu"))
    renamed = image_config()
    renamed.input.name = "pixels"
    with pytest.raises(ConfigError, match="input 'pixels' not in the graph"):
        Session(tmp_path / "model.onnx", renamed, runtime.RuntimeOptions(device="cpu"))
