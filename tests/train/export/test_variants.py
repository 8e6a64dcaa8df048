"""`onyx export --variant`: real int8/fp16 variants of small trained models, gated, published,
served side by side with their fp32 version.

    python -m pytest tests/train/export/test_variants.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

from onyx.cli import main
from onyx.client.classifier import Client
from onyx.contract.layout import CONFIG_FILE, MODEL_FILE, VERSION_CONFIG_FILE
from onyx.contract.model_config import load_config, load_version_config
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.train.config import AugmentConfig, ImageTrainConfig, TextTrainConfig
from onyx.train.data.reviews import generate_reviews, write_jsonl
from onyx.train.engine.loop import fit
from onyx.train.export import ExportConfig, ExportResult, export_checkpoint, quantize, variants
from onyx.train.export.gate import VariantRefused
from onyx.train.export.quantize import quantized_node_count
from onyx.train.export.variants import VariantDataError, run_logits, served_prepare
from onyx.train.tasks.registry import task_for
from tests.train.conftest import write_shapes


@dataclass(frozen=True)
class Trained:
    checkpoint: Path
    data: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The small CNN on coloured shapes (3 classes x 30 images), a few epochs: it learns."""
    root = tmp_path_factory.mktemp("shapes")
    data = write_shapes(root / "data", 30)
    config = ImageTrainConfig(data=data, out_dir=root / "run", image_size=32, epochs=3,
                              augment=AugmentConfig.off(), plots=False)  # fmt: skip
    return Trained(fit(task_for(config)).best_checkpoint, data)


@dataclass(frozen=True)
class Published:
    repository: Path
    result: ExportResult


@pytest.fixture(scope="module")
def published(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Published:
    repository = tmp_path_factory.mktemp("models")
    config = ExportConfig(trained.checkpoint, "shapes", repository, variant="int8")
    return Published(repository, export_checkpoint(config, tmp_path_factory.mktemp("work")))


def version_config(repository: Path, name: str, version: int) -> pb.VersionConfig:
    return load_version_config(repository / name / str(version) / VERSION_CONFIG_FILE)


def test_int8_is_published_after_fp32_with_its_gate_figures(published: Published) -> None:
    result, model_dir = published.result, published.repository / "shapes"
    assert (result.version, result.variant_version) == (1, 2)
    assert not version_config(published.repository, "shapes", 1).HasField("variant")
    variant = version_config(published.repository, "shapes", 2).variant
    assert variant.precision == pb.PRECISION_INT8
    assert variant.base_version == 1
    assert "static int8 QDQ U8S8, per-channel" in variant.method
    assert "on 72 training images" in variant.method  # the run's own training split (4/5 of 90)
    assert variant.validation_samples == 18
    assert variant.fp32_accuracy - variant.accuracy <= 0.01
    assert variant.agreement >= 0.99
    assert (variant.max_accuracy_drop, variant.min_agreement) == (1.0, 0.99)
    assert result.gate is not None and result.gate.agreement == variant.agreement
    # Really int8, and smaller; the fp32 version is untouched.
    assert quantized_node_count(model_dir / "2" / MODEL_FILE) > 0
    assert quantized_node_count(model_dir / "1" / MODEL_FILE) == 0
    fp32_bytes = sum(p.stat().st_size for p in (model_dir / "1").glob("model.onnx*"))
    assert (model_dir / "2" / MODEL_FILE).stat().st_size < fp32_bytes / 2
    # A new model serves both; the variant keeps the explanation head of its fp32 version.
    assert load_config(model_dir / CONFIG_FILE).version_policy.latest.num_versions == 2
    assert (model_dir / "2" / "head.npz").is_file()


def test_the_server_serves_fp32_by_default_and_int8_by_version(
    published: Published, trained: Trained
) -> None:
    paths = sorted(trained.data.rglob("*.png"))[::9]
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    prepare = served_prepare(checkpoint)
    model_dir = published.repository / "shapes"
    config = ServerConfig(repository=published.repository, host="127.0.0.1", port=0)
    with ServerThread(config) as server, Client(server.address) as client:
        for version, folder in ((0, "1"), (1, "1"), (2, "2")):
            expected = softmax(run_logits(model_dir / folder / MODEL_FILE, paths, prepare))
            response = client.classify_images("shapes", paths, top_k=3, version=version)
            for result, probs in zip(response.results, expected, strict=True):
                scores = {c.index: c.score for c in result.classes}
                assert np.allclose([scores[i] for i in range(3)], probs, atol=1e-5), version
        info = client.get_model("shapes")
        kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
        triton = [kserve.ModelConfig(kv2.ModelConfigRequest(name="shapes", version=v), timeout=10)
                  for v in ("1", "2")]  # fmt: skip
    assert [v.variant.precision for v in info.versions] == [pb.PRECISION_UNSPECIFIED,
                                                            pb.PRECISION_INT8]  # fmt: skip
    assert info.versions[1].variant.base_version == 1
    assert not info.config.HasField("variant")  # the default (fp32) version's config
    assert not triton[0].config.parameters
    assert triton[1].config.parameters["onyx_variant"].string_value == "int8"
    assert triton[1].config.parameters["onyx_variant_base_version"].string_value == "1"


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def negate_int8_head(path: Path) -> None:
    """A quantizer bug in miniature: the classifier head's int8 weights change sign."""
    model = onnx.load(str(path))
    head = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
            and len(t.dims) == 2]  # fmt: skip
    assert head, "no int8 head weights in the quantized file"
    for tensor in head:
        weights = numpy_helper.to_array(tensor).astype(np.int16)
        tensor.CopyFrom(numpy_helper.from_array((-weights).clip(-127, 127).astype(np.int8),
                                                tensor.name))  # fmt: skip
    onnx.save(model, str(path))


@pytest.fixture
def broken_quantizer(monkeypatch: pytest.MonkeyPatch) -> None:
    real = quantize.quantize_int8_static

    def broken(source: Path, target: Path, *args: Any) -> None:
        real(source, target, *args)
        negate_int8_head(target)

    monkeypatch.setattr(variants, "quantize_int8_static", broken)


def test_when_all_int8_is_refused_the_stem_is_kept_in_fp32_and_gated_again(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = quantize.quantize_int8_static

    def broken_unless_stem_kept(source: Path, target: Path, *args: Any) -> None:
        real(source, target, *args)
        if not args[-1]:  # fp32_nodes: none kept in float32
            negate_int8_head(target)

    monkeypatch.setattr(variants, "quantize_int8_static", broken_unless_stem_kept)
    config = ExportConfig(trained.checkpoint, "shapes", tmp_path / "models", variant="int8")
    result = export_checkpoint(config, tmp_path)
    variant = version_config(tmp_path / "models", "shapes", 2).variant
    assert variant.fp32_parts == "the first 3 convolutions (the stem)"
    assert result.gate is not None and result.gate.agreement >= 0.99


@pytest.mark.usefixtures("broken_quantizer")
def test_a_wrong_variant_is_refused_with_numbers_and_nothing_is_published(
    trained: Trained, tmp_path: Path
) -> None:
    config = ExportConfig(trained.checkpoint, "shapes", tmp_path / "models", variant="int8")
    with pytest.raises(VariantRefused) as refused:
        export_checkpoint(config, tmp_path)
    message = str(refused.value)
    assert "the int8 variant is refused: top-1 accuracy drops" in message
    assert "(< 99% required)" in message and "on 18 validation examples" in message
    assert "Nothing was published" in message
    assert not (tmp_path / "models" / "shapes").exists()


@pytest.mark.usefixtures("broken_quantizer")
def test_the_cli_refuses_with_a_non_zero_exit_and_loose_thresholds_let_it_through(
    trained: Trained, tmp_path: Path
) -> None:
    args = [
        "export", str(trained.checkpoint), "-n", "shapes", "-r", str(tmp_path), "--variant", "int8"
    ]  # fmt: skip
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1, refused.output
    assert "Error: the int8 variant is refused" in refused.output
    assert "agreement with fp32" in refused.output
    loose = CliRunner().invoke(main, [*args, "--max-accuracy-drop", "100", "--min-agreement", "0"])
    assert loose.exit_code == 0, loose.output
    assert "published shapes version 2: the int8 variant of version 1" in loose.output


def test_calibration_comes_from_the_given_folder_up_to_the_sample_count(
    trained: Trained, tmp_path: Path
) -> None:
    config = ExportConfig(trained.checkpoint, "shapes", tmp_path / "models", variant="int8",
                          calibration=trained.data / "circle", calibration_samples=5)  # fmt: skip
    result = export_checkpoint(config, tmp_path)
    method = version_config(tmp_path / "models", "shapes", 2).variant.method
    assert method.endswith(f"on 5 {trained.data / 'circle'} images"), method
    assert result.variant_version == 2


def test_without_its_data_the_variant_asks_for_calibration_and_validation(
    trained: Trained, tmp_path: Path
) -> None:
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    checkpoint["config"]["data"] = str(tmp_path / "gone")
    moved = tmp_path / "moved.pt"  # no split.json beside it
    torch.save(checkpoint, moved)
    config = ExportConfig(moved, "shapes", tmp_path / "models", variant="int8")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(VariantDataError, match="give --calibration DIR and --validation DIR"):
        export_checkpoint(config, work)
    assert not (tmp_path / "models" / "shapes").exists()


def test_fp16_keeps_float32_at_the_edges_within_the_stated_tolerance(
    trained: Trained, tmp_path: Path
) -> None:
    config = ExportConfig(trained.checkpoint, "shapes", tmp_path / "models", variant="fp16")
    result = export_checkpoint(config, tmp_path)
    assert result.gate is not None and result.gate.within_tolerance
    assert result.gate.max_abs_diff <= 5e-2
    variant = version_config(tmp_path / "models", "shapes", 2).variant
    assert variant.precision == pb.PRECISION_FP16
    model = onnx.load(str(tmp_path / "models" / "shapes" / "2" / MODEL_FILE))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    floats16 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(floats16) >= 4  # the convolutions' weights


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(generate_reviews(400), tmp_path_factory.mktemp("text") / "reviews.jsonl")


@pytest.mark.parametrize(("cell", "int8_rnn", "fp32_parts"), [
    ("lstm", "DynamicQuantizeLSTM", ""),
    ("gru", "", "GRU recurrence (ONNX Runtime has no int8 GRU)"),
])  # fmt: skip
def test_text_models_get_dynamic_int8_and_say_what_stays_fp32(
    reviews: Path, tmp_path: Path, cell: str, int8_rnn: str, fp32_parts: str
) -> None:
    train = TextTrainConfig(data=reviews, out_dir=tmp_path / "run", epochs=2, cell=cell,  # type: ignore[arg-type]
                            hidden=16, embed_dim=8, max_length=32, plots=False)  # fmt: skip
    # Two epochs leave many logits near a tie, where a 1e-3 move flips the answer: looser
    # thresholds, so that this test is about what is quantized (test_gate covers the gate).
    checkpoint = fit(task_for(train)).best_checkpoint
    config = ExportConfig(checkpoint, cell, tmp_path / "models", variant="int8",
                          max_accuracy_drop=5, min_agreement=0.9)  # fmt: skip
    result = export_checkpoint(config, tmp_path)
    variant = version_config(tmp_path / "models", cell, result.variant_version).variant
    assert variant.method.startswith("dynamic int8")
    assert variant.fp32_parts == fp32_parts
    assert variant.validation_samples == 80
    ops = {
        n.op_type for n in onnx.load(str(tmp_path / "models" / cell / "2" / MODEL_FILE)).graph.node
    }
    assert "MatMulInteger" in ops  # the head
    assert (int8_rnn in ops) if int8_rnn else ("GRU" in ops)
    assert (tmp_path / "models" / cell / "2" / "vocab.txt").is_file()


def test_an_existing_model_keeps_its_policy_and_the_export_warns(
    trained: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repository = tmp_path / "models"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    export_checkpoint(ExportConfig(trained.checkpoint, "shapes", repository), first)
    with caplog.at_level("WARNING", logger="onyx.train.export.variants"):
        result = export_checkpoint(
            ExportConfig(trained.checkpoint, "shapes", repository, variant="int8"), second
        )
    assert (result.version, result.variant_version) == (2, 3)
    assert not load_config(repository / "shapes" / CONFIG_FILE).HasField("version_policy")
    assert "the fp32 version will not be served beside the int8 variant" in caplog.text
