"""Repository and version pieces without a server: version policy, warm-up sizes, limits.

python -m pytest tests/serve/test_repository.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onyx.contract.errors import LimitExceeded, ModelNotReady
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.config import InputLimits
from onyx.serve.inputs import text_to_ids
from onyx.serve.repository import Repository, RepositoryOptions, select_versions
from onyx.serve.version import VersionLoader, length_for, warmup_batch_sizes
from tests.serve.tiny_models import (
    image_config,
    write_corrupt_version,
    write_image_model,
    write_model_config,
    write_text_model,
    write_version,
)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (pb.VersionPolicy(), [5]),
        (pb.VersionPolicy(latest=pb.VersionPolicy.Latest(num_versions=2)), [3, 5]),
        (pb.VersionPolicy(all=pb.VersionPolicy.All()), [1, 3, 5]),
        (pb.VersionPolicy(specific=pb.VersionPolicy.Specific(versions=[1, 4])), [1]),
    ],
)
def test_version_policy(policy: pb.VersionPolicy, expected: list[int]) -> None:
    assert select_versions([1, 3, 5], policy) == expected


def test_text_batches_are_grouped_by_token_count_and_images_are_not(tmp_path: Path) -> None:
    length = length_for(write_text_model(tmp_path))
    assert length is not None and length(np.zeros((2, 37), dtype=np.int64)) == 37
    assert length_for(image_config()) is None


def test_warmup_covers_the_batch_sizes_the_batcher_forms() -> None:
    assert warmup_batch_sizes(8, on_gpu=False) == [1, 8]
    assert warmup_batch_sizes(1, on_gpu=False) == [1]
    assert warmup_batch_sizes(4, on_gpu=True) == [1, 2, 3, 4]


def test_text_length_limit_is_named() -> None:
    with pytest.raises(LimitExceeded, match="max_text_chars limit of 5"):
        text_to_ids("too long", image_config(), InputLimits(max_text_chars=5), None)


def test_failed_versions_are_reported_not_raised(tmp_path: Path) -> None:
    write_image_model(tmp_path, "tiny", 1)
    write_corrupt_version(tmp_path, "tiny", 2)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.pbtxt").write_text("name: 'broken' nonsense: 1")

    async def main() -> None:
        repository = Repository(tmp_path, RepositoryOptions(instances=2))
        await repository.load_all()
        tiny = repository.get("tiny")
        assert tiny.versions[2].state == api.VERSION_STATE_FAILED
        with pytest.raises(ModelNotReady, match=r"v2: .*ONNX Runtime cannot load it"):
            tiny.version()  # the policy wants only v2, which failed; v1 was never loaded
        broken = repository.get("broken")
        assert not broken.ready and "not a valid ModelConfig" in broken.reason
        await repository.close()

    asyncio.run(main())


def test_the_instances_flag_overrides_the_config(tmp_path: Path) -> None:
    write_image_model(tmp_path, "tiny", 1)

    async def main() -> None:
        repository = Repository(tmp_path, RepositoryOptions(instances=3))
        await repository.load_all()
        version = repository.get("tiny").version()
        assert version.batcher is not None
        assert version.batcher.policy.max_concurrent_batches == 3
        await repository.close()

    asyncio.run(main())


def test_a_config_at_odds_with_the_graph_fails_that_version(tmp_path: Path) -> None:
    config = image_config()
    config.input.name = "pixels"  # the graph's input is "image"
    write_image_model(tmp_path, "tiny", 1, config=config)

    async def main() -> None:
        repository = Repository(tmp_path)
        await repository.load_all()
        version = repository.get("tiny").versions[1]
        assert version.state == api.VERSION_STATE_FAILED
        assert "does not match its config" in version.reason
        assert "'pixels' not in the graph" in version.reason
        await repository.close()

    asyncio.run(main())


def test_a_config_edit_that_would_drop_a_serving_version_keeps_the_old_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = image_config()
    config.version_policy.all.SetInParent()
    write_model_config(tmp_path, config)
    for number in (1, 2):
        write_version(tmp_path, "tiny", number, seed=number, config=config)
    load = VersionLoader._start

    async def v2_fails(self: VersionLoader, model: str, version: Any, cfg: Any) -> None:
        if version.version == 2:
            raise RuntimeError("out of memory")
        await load(self, model, version, cfg)

    async def main() -> None:
        repository = Repository(tmp_path)
        await repository.load_all()
        before = repository.get("tiny")
        assert before.version().version == 2
        monkeypatch.setattr(VersionLoader, "_start", v2_fails)
        config.instances = 2  # an edit every version is reloaded for; v2 fails under it
        write_model_config(tmp_path, config)
        await repository.poll()
        tiny = repository.get("tiny")
        # v1 alone would load, but swapping would stop v2: the old config keeps serving both.
        assert tiny is before and tiny.version().version == 2
        assert sorted(v.version for v in tiny.versions.values() if v.ready) == [1, 2]
        assert "v2 would stop serving" in tiny.reason and "out of memory" in tiny.reason
        await repository.poll()  # not retried until the config changes again
        assert repository.get("tiny") is before
        monkeypatch.setattr(VersionLoader, "_start", load)
        config.instances = 3
        write_model_config(tmp_path, config)
        await repository.poll()
        tiny = repository.get("tiny")
        assert tiny is not before and tiny.reason == "" and tiny.version().version == 2
        assert [tiny.versions[n].ready for n in (1, 2)] == [True, True]
        await repository.close()

    asyncio.run(main())


def test_a_poll_tells_listeners_once_and_only_when_something_changed(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write_image_model(tmp_path, name, 1, config=image_config(name))
    told: list[int] = []

    async def main() -> None:
        repository = Repository(tmp_path)
        await repository.load_all()

        async def on_change() -> None:
            told.append(len(repository.models()))

        repository.on_change = on_change
        await repository.poll()
        assert told == []  # nothing changed on disk
        write_version(tmp_path, "b", 2, seed=2, config=image_config("b"))
        write_version(tmp_path, "c", 2, seed=2, config=image_config("c"))
        await repository.poll()
        assert told == [3]  # two models changed: one notice
        assert [m.version().version for m in repository.models()] == [1, 2, 2]
        await repository.poll()
        assert told == [3]
        await repository.close()

    asyncio.run(main())
