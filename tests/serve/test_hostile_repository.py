"""A repository written by a careless or hostile hand: the server starts, serves the good models,
reports the bad ones, and never shows a byte of a file it was pointed at (issue 12).

python -m pytest tests/serve/test_hostile_repository.py
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from prometheus_client import generate_latest

from onyx.contract.layout import CONFIG_FILE, MODEL_FILE, VERSION_CONFIG_FILE
from onyx.contract.model_config import save_version_config, split_config
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.serve.background import ServerThread
from onyx.serve.frontends.health import models_ready
from onyx.serve.repository import Repository
from tests.serve.tiny_models import (
    image_config,
    image_graph,
    random_batch,
    write_image_model,
    write_model_config,
    write_text_model,
)
from tests.serve.wire import stub, tensor_request

SECRET = "TOPSECRET-d41d8cd9"
GOOD = ("tiny", "words", "oddnames")


def _vocabulary_at(root: Path, name: str, vocabulary_file: str) -> None:
    """Text model `name` whose version 1 names `vocabulary_file` (written as text: saving
    validates, and these names are invalid on purpose)."""
    write_text_model(root, name)
    path = root / name / "1" / VERSION_CONFIG_FILE
    text = path.read_text().replace('"vocab.txt"', f'"{vocabulary_file}"')
    assert vocabulary_file in text
    path.write_text(text)


def _external_data_version(root: Path, name: str, data: str) -> Path:
    """Model `name` whose weights live in model.onnx.data: `data` is "ok", "missing" (not
    copied yet) or "truncated". Returns the version folder; the full data is kept aside."""
    folder = root / name / "1"
    write_model_config(root, image_config(name))
    folder.mkdir(parents=True)
    onnx.save(
        image_graph(3), str(folder / MODEL_FILE), save_as_external_data=True,
        all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0,
    )  # fmt: skip
    save_version_config(split_config(image_config(name))[1], folder / VERSION_CONFIG_FILE)
    full = (folder / "model.onnx.data").read_bytes()
    (root.parent / f"{name}.data").write_bytes(full)
    if data == "missing":
        (folder / "model.onnx.data").unlink()
    elif data == "truncated":
        (folder / "model.onnx.data").write_bytes(full[: len(full) // 2])
    return folder


def hostile_repository(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{SECRET} {SECRET}\n{SECRET}\n")
    root = tmp_path / "models"
    write_image_model(root, "tiny")
    write_text_model(root, "words")
    # Version folders that are not versions: ignored (with a warning), never a crash.
    write_image_model(root, "oddnames", 1)
    for odd in ("²", "①", "01", "0", "v2", "٣", "1 "):
        (root / "oddnames" / odd).mkdir()
        (root / "oddnames" / odd / MODEL_FILE).write_bytes(b"never read")
    # Configs naming files outside their version.
    _vocabulary_at(root, "absolute", str(secret))
    _vocabulary_at(root, "climbing", "../../../secret.txt")
    write_text_model(root, "linked_vocab")
    (root / "linked_vocab" / "1" / "vocab.txt").unlink()
    (root / "linked_vocab" / "1" / "vocab.txt").symlink_to(secret)
    write_image_model(root, "linked_config")
    (root / "linked_config" / CONFIG_FILE).unlink()
    (root / "linked_config" / CONFIG_FILE).symlink_to(secret)
    write_image_model(root, "linked_model")
    (root / "linked_model" / "1" / MODEL_FILE).unlink()
    (root / "linked_model" / "1" / MODEL_FILE).symlink_to(secret)
    # Files that are not what they should be.
    write_image_model(root, "unparsable")
    (root / "unparsable" / CONFIG_FILE).write_text(f"{SECRET}: {{ oops\n")
    write_image_model(root, "secret_description")
    (root / "secret_description" / "1" / VERSION_CONFIG_FILE).write_text(f"{SECRET}\n")
    write_image_model(root, "truncated")
    model = root / "truncated" / "1" / MODEL_FILE
    model.write_bytes(model.read_bytes()[:100])
    _external_data_version(root, "late_data", "missing")
    _external_data_version(root, "short_data", "truncated")
    write_model_config(root, image_config("empty"))
    (root / "empty" / "1").mkdir()
    return root


BAD = {
    "absolute": "relative path",
    "climbing": "relative path",
    "linked_vocab": "leads outside",
    "linked_config": "leads outside",
    "linked_model": "leads outside",
    "unparsable": "not a valid ModelConfig (line 1",
    "secret_description": "not a valid VersionConfig (line 1",
    "truncated": "cannot load it",
    "late_data": "does not exist",
    "short_data": "cannot load it",
    "empty": "is empty",
}


def _reason(info: api.ModelInfo) -> str:
    return " ".join([info.reason, *(v.reason for v in info.versions)])


def test_a_hostile_repository_serves_the_good_models_and_quotes_nothing(
    tmp_path: Path,
    start_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = hostile_repository(tmp_path)
    with caplog.at_level(logging.WARNING, logger="onyx.serve.repository"):
        server = start_server(root)
    client = stub(server.address)

    # The good models serve.
    response = client.Classify(tensor_request(random_batch(1), model="tiny"))
    assert len(response.results) == 1
    response = client.Classify(api.ClassifyRequest(model="words", inputs=[api.Input(text="good")]))
    assert len(response.results) == 1
    oddnames = client.GetModel(api.GetModelRequest(name="oddnames"))
    assert oddnames.ready and [v.version for v in oddnames.versions] == [1]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'v2' is not a version" in warned and "'²' is not a version" in warned

    # The bad ones are listed, not ready, with a reason that names the problem...
    listed = {m.name: m for m in client.ListModels(api.ListModelsRequest()).models}
    assert set(listed) == {*GOOD, *BAD}
    for name, why in BAD.items():
        info = listed[name]
        assert not info.ready, name
        assert why in _reason(info), (name, _reason(info))
        with pytest.raises(grpc.RpcError) as failed:
            client.Classify(tensor_request(random_batch(1), model=name))
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, name
        assert SECRET not in (failed.value.details() or "")

    # ... and no answer anywhere quotes a file's contents.
    kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    index = kserve.RepositoryIndex(kv2.RepositoryIndexRequest())
    shown = [
        str(client.ListModels(api.ListModelsRequest())),
        *(str(client.GetModel(api.GetModelRequest(name=n))) for n in BAD),
        str(index),
    ]
    assert not any(SECRET in text for text in shown)
    states = {(e.name, e.state) for e in index.models}
    assert ("unparsable", "UNAVAILABLE") in states and ("tiny", "READY") in states

    # A model whose config does not parse is on the dashboard: ready 0 and a load failure.
    assert server.running is not None and server.running.metrics is not None
    scraped = generate_latest(server.running.metrics.registry).decode()
    assert 'onyx_model_ready{model="unparsable",version=""} 0.0' in scraped
    assert 'onyx_model_load_failures_total{model="unparsable"} 1.0' in scraped
    assert SECRET not in scraped


def test_strict_readiness_is_false_while_any_configured_model_fails(tmp_path: Path) -> None:
    root = tmp_path / "models"
    repository = Repository(root)
    assert not models_ready(repository.models(), lenient=False)  # nothing to serve: not ready
    write_image_model(root, "tiny")
    assert not models_ready(repository.models(), lenient=False)  # on disk, not loaded yet


def test_late_external_data_is_loaded_when_it_lands(
    tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    """A version copied in by hand whose model.onnx.data lands after model.onnx: FAILED at
    first, then retried and served as soon as the data file changes (issue 12)."""
    root = tmp_path / "models"
    folder = _external_data_version(root, "late", "missing")
    server = start_server(root, model_control="poll", poll_interval_s=0.05)
    client = stub(server.address)
    info = client.GetModel(api.GetModelRequest(name="late"))
    assert not info.ready and info.versions[0].state == api.VERSION_STATE_FAILED
    (folder / "model.onnx.data").write_bytes((tmp_path / "late.data").read_bytes()[:10])
    time.sleep(0.3)
    assert not client.GetModel(api.GetModelRequest(name="late")).ready  # still incomplete
    (folder / "model.onnx.data").write_bytes((tmp_path / "late.data").read_bytes())
    deadline = time.monotonic() + 10
    while not client.GetModel(api.GetModelRequest(name="late")).ready:
        assert time.monotonic() < deadline, "the completed version never loaded"
        time.sleep(0.05)
    response = client.Classify(tensor_request(random_batch(2), model="late"))
    assert len(response.results) == 2
    assert np.isfinite([c.score for r in response.results for c in r.classes]).all()


@pytest.mark.parametrize("broken", [CONFIG_FILE, f"1/{VERSION_CONFIG_FILE}"])
def test_once_a_broken_file_is_fixed_the_reason_no_longer_says_reload_failed(
    tmp_path: Path, broken: str
) -> None:
    async def main() -> None:
        root = tmp_path / "models"
        write_image_model(root, "tiny")
        path = root / "tiny" / broken
        good = path.read_text()
        repository = Repository(root)
        await repository.load_all()
        path.write_text(f"{SECRET} {{\n")
        await repository.poll()
        model = repository.get("tiny")
        shown = " ".join([model.reason, *(v.reason for v in model.versions.values())])
        assert model.ready and "reload failed" in shown and SECRET not in shown
        path.write_text(good.replace("2000", "1000") if broken == CONFIG_FILE else good)
        await repository.poll()
        model = repository.get("tiny")
        shown = " ".join([model.reason, *(v.reason for v in model.versions.values())])
        assert model.ready and shown.strip() == ""
        await repository.close()

    asyncio.run(main())
