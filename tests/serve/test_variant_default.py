"""Which version answers a request that names none, when faster variants are loaded."""

from __future__ import annotations

from pathlib import Path

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.repository import Model
from onyx.serve.version import ModelVersion


def version(
    number: int, precision: int = pb.PRECISION_UNSPECIFIED, ready: bool = True
) -> ModelVersion:
    config = pb.ModelConfig(name="m")
    if precision:
        config.variant.precision = precision  # type: ignore[assignment]
    state = api.VERSION_STATE_READY if ready else api.VERSION_STATE_FAILED
    return ModelVersion(version=number, path=Path(str(number)), state=state, config=config)


def model(*versions: ModelVersion) -> Model:
    return Model(
        "m", Path("m"), pb.ModelConfig(name="m"), versions={v.version: v for v in versions}
    )


def test_the_newest_exact_version_answers_and_variants_answer_by_number() -> None:
    loaded = model(version(1), version(2, pb.PRECISION_INT8), version(3, pb.PRECISION_FP16))
    assert loaded.version().version == 1
    assert loaded.version(2).version == 2
    assert not loaded.describe().HasField("variant")  # type: ignore[union-attr]


def test_a_newer_exact_version_wins_over_an_older_one() -> None:
    assert model(version(1), version(2, pb.PRECISION_INT8), version(3)).version().version == 3


def test_a_variant_answers_when_no_exact_version_is_ready() -> None:
    loaded = model(version(1, ready=False), version(2, pb.PRECISION_INT8))
    assert loaded.version().version == 2
    assert loaded.describe().variant.precision == pb.PRECISION_INT8  # type: ignore[union-attr]
