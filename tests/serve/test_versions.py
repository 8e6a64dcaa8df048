"""Self-describing versions over real channels: each version serves with its own description.

python -m pytest tests/serve/test_versions.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onyx.contract.layout import CONFIG_FILE
from onyx.contract.model_config import save_config
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from tests.serve.test_reload import POLL, loads_of
from tests.serve.tiny_models import (
    LABELS,
    image_config,
    random_batch,
    reference,
    write_model_config,
    write_old_layout_model,
    write_text_model,
    write_version,
)
from tests.serve.wire import scores_of, softmax, stub, tensor_request

Start = Callable[..., ServerThread]
OTHER_LABELS = ["ant", "bee", "cow"]
ALL_VERSIONS = pb.VersionPolicy(all=pb.VersionPolicy.All())


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def ready_versions(server: ServerThread, model: str = "tiny") -> set[int]:
    info = stub(server.address).GetModel(api.GetModelRequest(name=model), timeout=10)
    return {v.version for v in info.versions if v.state == api.VERSION_STATE_READY}


def classify(server: ServerThread, version: int, seed: int = 0) -> api.ClassifyResponse:
    request = tensor_request(random_batch(1, seed))
    request.version = version
    response: api.ClassifyResponse = stub(server.address).Classify(request, timeout=10)
    return response


def labels_of(response: api.ClassifyResponse) -> set[str]:
    return {c.label for c in response.results[0].classes}


def test_a_new_version_with_other_labels_leaves_the_old_one_alone(
    tmp_path: Path, start_server: Start
) -> None:
    repo = tmp_path / "models"
    config = image_config()
    config.version_policy.CopyFrom(ALL_VERSIONS)
    write_model_config(repo, config)
    write_version(repo, "tiny", 1, seed=1, config=config)
    policy_before = (repo / "tiny" / CONFIG_FILE).read_bytes()
    server = start_server(repo, **POLL)
    assert loads_of(server, 1) == 1

    write_version(repo, "tiny", 2, seed=2, config=image_config(labels=OTHER_LABELS))
    wait_for(lambda: ready_versions(server) == {1, 2})
    newest = classify(server, 0)
    assert newest.version == 2 and labels_of(newest) == set(OTHER_LABELS)
    old = classify(server, 1)
    assert old.version == 1 and labels_of(old) == set(LABELS)
    expected = softmax(reference(random_batch(1, 0), seed=1))[0]
    assert np.allclose([scores_of(old)[0][i] for i in range(3)], expected, atol=1e-5)
    # v1 was loaded once, at start: publishing v2 did not reload it, nor touch config.pbtxt.
    assert (loads_of(server, 1), loads_of(server, 2)) == (1, 1)
    assert (repo / "tiny" / CONFIG_FILE).read_bytes() == policy_before


def classify_text(server: ServerThread, text: str, version: int) -> api.ClassifyResponse:
    request = api.ClassifyRequest(model="words", inputs=[api.Input(text=text)], top_k=2)
    request.version = version
    response: api.ClassifyResponse = stub(server.address).Classify(request, timeout=10)
    return response


def text_scores(ids: list[int], vocabulary_size: int) -> np.ndarray:
    """What `write_text_model`'s graph answers for these token ids: mean embedding, softmax."""
    embedding = np.random.default_rng(0).standard_normal((vocabulary_size, 2)).astype(np.float32)
    return softmax(embedding[ids].mean(axis=0))


def test_text_versions_tokenize_with_their_own_vocabulary_and_length(
    tmp_path: Path, start_server: Start
) -> None:
    repo = tmp_path / "models"
    write_text_model(repo, "words", 1, max_length=16, tokens=["<pad>", "<unk>", "good", "bad"])
    config = write_text_model(
        repo, "words", 2, max_length=2, tokens=["<pad>", "<unk>", "bad", "meh", "good"]
    )
    config.version_policy.CopyFrom(ALL_VERSIONS)
    write_model_config(repo, config)
    server = start_server(repo)
    assert ready_versions(server, "words") == {1, 2}
    text = "good bad meh good"
    cases = {1: ([2, 3, 1, 2], 4), 2: ([4, 2], 5)}  # v1: "meh" unknown; v2: cut at 2 tokens
    for version, (ids, size) in cases.items():
        response = classify_text(server, text, version)
        assert response.version == version
        got = scores_of(response)[0]
        assert np.allclose([got[0], got[1]], text_scores(ids, size), atol=1e-5), version


def test_a_repository_in_the_old_layout_still_loads(tmp_path: Path, start_server: Start) -> None:
    """onyx 0.2 kept every fact in config.pbtxt: they are the defaults of undescribed versions."""
    repo = tmp_path / "models"
    write_old_layout_model(repo, "tiny", 1)
    assert not (repo / "tiny" / "1" / "model.pbtxt").exists()
    server = start_server(repo, **POLL)
    first = classify(server, 1)
    assert labels_of(first) == set(LABELS)
    info = stub(server.address).GetModel(api.GetModelRequest(name="tiny"), timeout=10)
    assert list(info.config.labels) == LABELS

    # Publishing a described version beside it: v2 has its own labels, v1 keeps the defaults.
    old = image_config()
    old.version_policy.CopyFrom(ALL_VERSIONS)
    save_config(old, repo / "tiny" / CONFIG_FILE)  # still the old layout, now keeping both
    wait_for(lambda: ready_versions(server) == {1})
    write_version(repo, "tiny", 2, seed=2, config=image_config(labels=OTHER_LABELS))
    wait_for(lambda: ready_versions(server) == {1, 2})
    assert labels_of(classify(server, 2)) == set(OTHER_LABELS)
    assert labels_of(classify(server, 1)) == set(LABELS)


def test_a_version_policy_edit_reloads_no_version_it_keeps(
    tmp_path: Path, start_server: Start
) -> None:
    repo = tmp_path / "models"
    config = image_config()
    write_model_config(repo, config)
    for number in (1, 2):
        write_version(repo, "tiny", number, seed=number, config=config)
    server = start_server(repo, **POLL)
    assert ready_versions(server) == {2} and (loads_of(server, 1), loads_of(server, 2)) == (0, 1)

    config.version_policy.CopyFrom(ALL_VERSIONS)
    write_model_config(repo, config)
    wait_for(lambda: ready_versions(server) == {1, 2})
    assert classify(server, 1).version == 1 and classify(server, 0).version == 2
    # v1 was loaded for the new policy; v2, wanted before and after, was not reloaded.
    assert (loads_of(server, 1), loads_of(server, 2)) == (1, 1)
    info = stub(server.address).GetModel(api.GetModelRequest(name="tiny"), timeout=10)
    assert info.config.version_policy == ALL_VERSIONS

    config.version_policy.CopyFrom(
        pb.VersionPolicy(specific=pb.VersionPolicy.Specific(versions=[1]))
    )
    write_model_config(repo, config)
    wait_for(lambda: ready_versions(server) == {1})
    assert classify(server, 0).version == 1
    assert (loads_of(server, 1), loads_of(server, 2)) == (1, 1)

    config.instances = 2  # anything else is a whole reload, as before
    write_model_config(repo, config)
    wait_for(lambda: loads_of(server, 1) == 2)
    assert ready_versions(server) == {1}
