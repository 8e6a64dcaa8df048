"""Which version answers a request that names none, when faster variants are loaded: the newest
exact one, or its variant where the model's `default_precision` prefers that precision."""

from __future__ import annotations

from pathlib import Path

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.repository import Model
from onyx.serve.version import ModelVersion


def version(
    number: int,
    precision: int = pb.PRECISION_UNSPECIFIED,
    ready: bool = True,
    base: int = 0,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> ModelVersion:
    config = pb.ModelConfig(name="m")
    if precision:
        config.variant.precision = precision  # type: ignore[assignment]
        config.variant.base_version = base
    state = api.VERSION_STATE_READY if ready else api.VERSION_STATE_FAILED
    return ModelVersion(version=number, path=Path(str(number)), state=state, config=config,
                        providers=list(providers))  # fmt: skip


def model(*versions: ModelVersion, policy: pb.DefaultPrecision | None = None) -> Model:
    config = pb.ModelConfig(name="m", default_precision=policy)
    return Model("m", Path("m"), config, versions={v.version: v for v in versions})


INT8_ON_CPU_FP16_ON_CUDA = pb.DefaultPrecision(cpu=pb.PRECISION_INT8, cuda=pb.PRECISION_FP16)


def test_the_newest_exact_version_answers_and_variants_answer_by_number() -> None:
    loaded = model(version(1), version(2, pb.PRECISION_INT8, base=1),
                   version(3, pb.PRECISION_FP16, base=1))  # fmt: skip
    assert loaded.version().version == 1
    assert loaded.version(2).version == 2
    assert not loaded.describe().HasField("variant")  # type: ignore[union-attr]


def test_a_newer_exact_version_wins_over_an_older_one() -> None:
    assert model(version(1), version(2, pb.PRECISION_INT8), version(3)).version().version == 3


def test_a_variant_answers_when_no_exact_version_is_ready() -> None:
    loaded = model(version(1, ready=False), version(2, pb.PRECISION_INT8))
    assert loaded.version().version == 2
    assert loaded.describe().variant.precision == pb.PRECISION_INT8  # type: ignore[union-attr]


def test_the_policy_picks_the_variant_of_the_newest_exact_version_per_device() -> None:
    on_cpu = model(
        version(1),
        version(2, pb.PRECISION_INT8, base=1),
        version(3, pb.PRECISION_FP16, base=1),
        policy=INT8_ON_CPU_FP16_ON_CUDA,
    )
    assert on_cpu.version().version == 2
    assert on_cpu.describe().variant.precision == pb.PRECISION_INT8  # type: ignore[union-attr]
    cuda = ("CUDAExecutionProvider", "CPUExecutionProvider")
    on_gpu = model(
        version(1, providers=cuda),
        version(2, pb.PRECISION_INT8, base=1, providers=cuda),
        version(3, pb.PRECISION_FP16, base=1, providers=cuda),
        policy=INT8_ON_CPU_FP16_ON_CUDA,
    )
    assert on_gpu.version().version == 3


def test_the_policy_never_prefers_a_variant_of_an_older_version() -> None:
    """v3 is a newer training without an int8 variant: it answers, not v1's int8 (v2)."""
    loaded = model(version(1), version(2, pb.PRECISION_INT8, base=1), version(3),
                   policy=INT8_ON_CPU_FP16_ON_CUDA)  # fmt: skip
    assert loaded.version().version == 3
