"""Train -> export -> publish -> serve -> Classify over a real channel, checked against ORT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onyx.contract.layout import CONFIG_FILE, VERSION_CONFIG_FILE, version_config
from onyx.contract.preprocess import image_bytes_to_array
from onyx.contract.scores import activate
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.train.config import ImageTrainConfig
from onyx.train.engine.loop import fit
from onyx.train.export import ExportConfig, export_checkpoint
from onyx.train.tasks.registry import task_for


@pytest.fixture(scope="module")
def repository(colour_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    config = ImageTrainConfig(
        data=str(colour_folder),
        out_dir=str(work / "run"),
        image_size=16,
        epochs=2,
        batch_size=8,
        max_steps=3,
        lr=1e-2,
    )
    fitted = fit(task_for(config))
    assert (work / "run" / "config.json").is_file()
    repo = work / "models"
    (work / "export").mkdir()
    result = export_checkpoint(
        ExportConfig(checkpoint=fitted.best_checkpoint, name="colours", repository=repo),
        work / "export",
    )
    assert result.version == 1 and result.max_abs_diff < 1e-4
    # Published as a version is: policy at model level, the description in the version folder.
    colours, broken = repo / "colours", repo / "broken"
    assert sorted(p.name for p in colours.iterdir()) == ["1", CONFIG_FILE]
    assert "labels" not in (colours / CONFIG_FILE).read_text()
    (broken / "1").mkdir(parents=True)
    (broken / CONFIG_FILE).write_text((colours / CONFIG_FILE).read_text())
    description = (colours / "1" / VERSION_CONFIG_FILE).read_text()
    (broken / "1" / VERSION_CONFIG_FILE).write_text(description)
    (broken / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    return repo


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(repository=repository, host="127.0.0.1", port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> Iterator[api_grpc.ClassifierStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield api_grpc.ClassifierStub(channel)


def _images(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.rglob("*.png"))[::5]]


def test_scores_equal_onnx_runtime_in_process(
    stub: api_grpc.ClassifierStub, repository: Path, colour_folder: Path
) -> None:
    images = _images(colour_folder)
    response = stub.Classify(
        api.ClassifyRequest(model="colours", inputs=[api.Input(image=b) for b in images], top_k=3),
        timeout=30,
    )
    config = version_config(repository / "colours", 1)
    session = ort.InferenceSession(str(repository / "colours" / "1" / "model.onnx"))
    batch = np.stack([image_bytes_to_array(b, config.image) for b in images])
    (logits,) = session.run([config.output.name], {config.input.name: batch})
    expected = activate(logits, config.output_activation)
    assert response.model == "colours" and response.version == 1
    assert len(response.results) == len(images)
    for row, result in zip(expected, response.results, strict=True):
        assert [c.index for c in result.classes] == list(np.argsort(-row)[:3])
        assert [c.label for c in result.classes] == [config.labels[c.index] for c in result.classes]
        for cls in result.classes:
            assert cls.score == pytest.approx(row[cls.index], abs=1e-5)


def test_unknown_model_is_not_found(stub: api_grpc.ClassifierStub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(api.ClassifyRequest(model="nope", inputs=[api.Input(image=b"x")]), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope'" in error.value.details()


def test_undecodable_image_is_invalid_argument_naming_the_input(
    stub: api_grpc.ClassifierStub, colour_folder: Path
) -> None:
    good = _images(colour_folder)[0]
    request = api.ClassifyRequest(
        model="colours", inputs=[api.Input(image=good), api.Input(image=b"garbage")]
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("input 1:")


def test_text_to_an_image_model_is_invalid_argument(stub: api_grpc.ClassifierStub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(
            api.ClassifyRequest(model="colours", inputs=[api.Input(text="hi")]), timeout=10
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "image model" in error.value.details()


def test_corrupt_model_is_reported_not_ready_while_others_serve(
    stub: api_grpc.ClassifierStub, server: ServerThread
) -> None:
    models = {m.name: m for m in stub.ListModels(api.ListModelsRequest(), timeout=10).models}
    assert models["colours"].ready
    assert not models["broken"].ready
    assert "cannot load" in models["broken"].versions[0].reason
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(
            api.ClassifyRequest(model="broken", inputs=[api.Input(image=b"x")]), timeout=10
        )
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(service="broken"), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        check = health.Check(health_pb2.HealthCheckRequest(service="colours"), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.SERVING


def test_get_model_carries_the_config(stub: api_grpc.ClassifierStub) -> None:
    info = stub.GetModel(api.GetModelRequest(name="colours"), timeout=10)
    assert list(info.config.labels) == ["blue", "green", "red"]
    assert info.config.export.opset == 18
    assert info.versions[0].providers == ["CPUExecutionProvider"]
