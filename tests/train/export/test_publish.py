"""Publishing adds one immutable, self-describing version and changes nothing else.

python -m pytest tests/train/export/test_publish.py
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import onnx
import pytest

from onyx.contract.errors import ConfigError
from onyx.contract.layout import CONFIG_FILE, MODEL_FILE, VERSION_CONFIG_FILE, version_config
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.train.export.publish import publish
from tests.serve.tiny_models import (
    LABELS,
    image_config,
    image_graph,
    random_batch,
    write_old_layout_model,
)
from tests.serve.wire import tensor_request

OTHER_LABELS = ["ant", "bee", "cow"]


def exported(folder: Path, seed: int = 1) -> Path:
    """What export leaves in its work folder: the verified model file and its provenance."""
    folder.mkdir(parents=True)
    onnx.save(image_graph(seed), str(folder / MODEL_FILE))
    (folder / "export.json").write_text("{}")
    return folder


def whole_config(labels: list[str] = LABELS, max_batch_size: int = 8) -> pb.ModelConfig:
    config = image_config(labels=labels, max_batch_size=max_batch_size)
    config.version_policy.CopyFrom(pb.VersionPolicy(all=pb.VersionPolicy.All()))
    config.export.opset = 17
    return config


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_publish_adds_a_self_describing_version_and_nothing_else(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    version, path = publish(repo, whole_config(), exported(tmp_path / "v1"))
    model_dir = repo / "tiny"
    assert (version, path) == (1, model_dir / "1" / MODEL_FILE)
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", CONFIG_FILE]  # no staging left
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == [
        "export.json",
        MODEL_FILE,
        VERSION_CONFIG_FILE,
    ]
    policy = (model_dir / CONFIG_FILE).read_text()
    assert "batching" in policy and "labels" not in policy and "export" not in policy
    before = snapshot(model_dir)

    # v2: other labels, other batching asked for; v1 and the model's policy stay as they were.
    version, _ = publish(repo, whole_config(OTHER_LABELS, 2), exported(tmp_path / "v2", seed=2))
    assert version == 2
    after = snapshot(model_dir)
    assert {k: v for k, v in after.items() if not k.startswith("2/")} == before
    assert list(version_config(model_dir, 1).labels) == LABELS
    described = version_config(model_dir, 2)
    assert list(described.labels) == OTHER_LABELS and described.export.opset == 17
    assert described.batching.max_batch_size == 8  # the policy is the model's, set once


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_published_files_are_readable_by_others_under_the_umask(tmp_path: Path, umask: int) -> None:
    """mkdtemp/mkstemp make 0700/0600; a server running as another uid (the image's 10001)
    could not read the version (issue 12). Modes follow the umask, as plain files would."""
    old = os.umask(umask)
    try:
        source = exported(tmp_path / "v1")
        (source / MODEL_FILE).chmod(0o600)  # whatever export left, the copy follows the umask
        publish(tmp_path / "models", whole_config(), source)
    finally:
        os.umask(old)
    model_dir = tmp_path / "models" / "tiny"
    modes = {
        str(p.relative_to(model_dir)): stat.S_IMODE(p.stat().st_mode)
        for p in [model_dir, *model_dir.rglob("*")]
    }
    want_file, want_dir = 0o666 & ~umask, 0o777 & ~umask
    assert modes == {
        ".": want_dir,
        CONFIG_FILE: want_file,
        "1": want_dir,
        f"1/{MODEL_FILE}": want_file,
        f"1/{VERSION_CONFIG_FILE}": want_file,
        "1/export.json": want_file,
    }


def test_publishing_beside_an_old_layout_model_leaves_its_config(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    model_dir = write_old_layout_model(repo, "tiny", 1)
    config_before = (model_dir / CONFIG_FILE).read_bytes()
    publish(repo, whole_config(OTHER_LABELS), exported(tmp_path / "v2", seed=2))
    assert (model_dir / CONFIG_FILE).read_bytes() == config_before
    assert list(version_config(model_dir, 1).labels) == LABELS  # model-level defaults
    assert list(version_config(model_dir, 2).labels) == OTHER_LABELS


def test_an_invalid_description_publishes_nothing(tmp_path: Path) -> None:
    config = whole_config()
    config.ClearField("labels")
    with pytest.raises(ConfigError, match="labels is empty"):
        publish(tmp_path / "models", config, exported(tmp_path / "v1"))
    assert list((tmp_path / "models" / "tiny").iterdir()) == []


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_polling_server_loads_just_the_published_version(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    publish(repo, whole_config(), exported(tmp_path / "v1"))
    config = ServerConfig(
        repository=repo, host="127.0.0.1", port=0, model_control="poll", poll_interval_s=0.05
    )
    with ServerThread(config) as server, grpc.insecure_channel(server.address) as channel:
        client = api_grpc.ClassifierStub(channel)
        assert server.running is not None and server.running.metrics is not None
        registry = server.running.metrics.registry

        def loads(version: int) -> float | None:
            labels = {"model": "tiny", "version": str(version)}
            return registry.get_sample_value("onyx_model_loads_total", labels)

        def classify(version: int) -> api.ClassifyResponse:
            request = tensor_request(random_batch(1))
            request.version = version
            response: api.ClassifyResponse = client.Classify(request, timeout=10)
            return response

        assert loads(1) == 1
        publish(repo, whole_config(OTHER_LABELS), exported(tmp_path / "v2", seed=2))
        wait_for(lambda: loads(2) == 1)
        newest, old = classify(0), classify(1)
        assert newest.version == 2
        assert {c.label for c in newest.results[0].classes} == set(OTHER_LABELS)
        assert old.version == 1
        assert {c.label for c in old.results[0].classes} == set(LABELS)
        assert loads(1) == 1  # publishing v2 did not reload v1
