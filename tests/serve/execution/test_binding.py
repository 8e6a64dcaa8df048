"""IO binding (the CUDA path's way of running a batch), exercised on the CPU: `io_binding="on"`
must return exactly what plain `run` returns, for every batch size in turn, variable text
lengths and two outputs (explain), and must really go through the binding."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from onyx.client.classifier import Client
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from onyx.serve.execution import runtime
from onyx.serve.execution.binding import Runner
from onyx.serve.execution.runtime import CPU, CUDA, RuntimeOptions, Session, uses_io_binding
from tests.serve.explain.test_explain import gap_config, gap_graph, write_gap_model
from tests.serve.tiny_models import (
    image_config,
    image_graph,
    png_bytes,
    random_batch,
    reference,
    write_text_model,
)

# Every size, growing and shrinking: a binding that kept one run's output buffers would refuse
# the next size.
SIZES = (1, 3, 8, 2, 8, 1, 5)


def pair(path: Path, config: pb.ModelConfig) -> tuple[Session, Session]:
    """(plain, bound) sessions of one file; the bound one cannot fall back to plain `run`."""
    plain = Session(path, config, RuntimeOptions(device="cpu", io_binding="off"))
    bound = Session(path, config, RuntimeOptions(device="cpu", io_binding="on"))
    assert (plain.io_binding, bound.io_binding) == (False, True)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the bound session called plain run")

    bound._session.run = refuse  # type: ignore[method-assign]
    return plain, bound


def test_image_model_every_batch_size(tmp_path: Path) -> None:
    onnx.save(image_graph(seed=1), str(tmp_path / "model.onnx"))
    plain, bound = pair(tmp_path / "model.onnx", image_config())
    for size in SIZES:
        batch = random_batch(size, seed=size)
        got = bound.run(batch)["logits"]
        assert got.shape == (size, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, plain.run(batch)["logits"])
        np.testing.assert_allclose(got, reference(batch, seed=1), rtol=1e-5, atol=1e-5)


def test_text_model_variable_lengths_and_a_non_contiguous_batch(tmp_path: Path) -> None:
    config = write_text_model(tmp_path, "words", 1)
    plain, bound = pair(tmp_path / "words" / "1" / "model.onnx", config)
    rng = np.random.default_rng(0)
    for size, length in [(1, 3), (4, 16), (2, 7), (4, 1), (3, 12)]:
        ids = rng.integers(0, 5, (size, length)).astype(np.int64)
        np.testing.assert_array_equal(bound.run(ids)["logits"], plain.run(ids)["logits"])
    strided = rng.integers(0, 5, (4, 20)).astype(np.int64)[:, ::2]  # a view, not contiguous
    got = bound.run(strided)["logits"]
    np.testing.assert_array_equal(got, plain.run(np.ascontiguousarray(strided))["logits"])


def test_explain_model_returns_both_outputs_by_name(tmp_path: Path) -> None:
    onnx.save(gap_graph(), str(tmp_path / "model.onnx"))
    plain, bound = pair(tmp_path / "model.onnx", gap_config())
    for size in SIZES:
        batch = np.random.default_rng(size).standard_normal((size, 3, 16, 16), dtype=np.float32)
        got, expected = bound.run(batch), plain.run(batch)
        assert list(got) == list(expected) == ["logits", "feature_map"]
        for name in got:
            np.testing.assert_array_equal(got[name], expected[name])
        assert got["logits"].shape == (size, 3) and got["feature_map"].shape == (size, 4, 16, 16)


def test_threads_share_a_bound_session(tmp_path: Path) -> None:
    """Each thread binds its own batch: concurrent runs of other sizes do not mix."""
    onnx.save(image_graph(seed=1), str(tmp_path / "model.onnx"))
    _, bound = pair(tmp_path / "model.onnx", image_config())
    failures: list[BaseException] = []

    def work(size: int) -> None:
        try:
            for round_ in range(50):
                batch = random_batch(size, seed=round_)
                expected = reference(batch, seed=1)
                got = bound.run(batch)["logits"]
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        except BaseException as exc:  # reported below, from the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(size,)) for size in (1, 4, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]


def test_auto_binds_on_cuda_only() -> None:
    assert uses_io_binding("auto", [CUDA, CPU])
    assert not uses_io_binding("auto", [CPU])
    assert not uses_io_binding("off", [CUDA, CPU])
    assert uses_io_binding("on", [CPU])


def test_cpu_sessions_run_plain_by_default(tmp_path: Path) -> None:
    onnx.save(image_graph(seed=1), str(tmp_path / "model.onnx"))
    assert not Session(tmp_path / "model.onnx", image_config(), RuntimeOptions("cpu")).io_binding


def recording(make: Callable[..., Runner], made: list[object]) -> Callable[..., Runner]:
    def record(*args: object) -> Runner:
        made.append(args)
        return make(*args)

    return record


@pytest.mark.parametrize("explain", [False, True])
def test_a_server_with_io_binding_answers_as_one_without(
    tmp_path: Path,
    start_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
    explain: bool,
) -> None:
    """Through the batcher and warm-up: `--io-binding on` changes no score or heatmap."""
    write_gap_model(tmp_path / "models")
    bound: list[object] = []
    monkeypatch.setattr(runtime, "bound_runner", recording(runtime.bound_runner, bound))
    images = [api.Input(image=png_bytes(seed, 16)) for seed in range(5)]
    options = api.ExplainOptions() if explain else None
    answers = []
    for setting in ("off", "on"):
        server = start_server(tmp_path / "models", io_binding=setting)
        with Client(server.address) as client:
            answers.append(client.classify("gap", images, top_k=3, explain=options))
        server.stop()
        assert bool(bound) == (setting == "on")  # the server's sessions bound (or not)
    assert list(answers[0].results) == list(answers[1].results)
    assert all(r.explanations for r in answers[1].results) == explain
