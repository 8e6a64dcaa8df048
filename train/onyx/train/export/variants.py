"""A faster variant of a verified fp32 export: built, gated on accuracy, published as a version.

    onyx export runs/pets/best.pt -n pets --variant int8     # fp32 as version N, int8 as N+1
    onyx export runs/pets/best.pt -n pets --variant int8 --calibration photos/ --validation val/

`build_variant` turns the fp32 file export just verified into the variant
(`onyx.train.export.quantize`): static int8 for CNNs, calibrated on the checkpoint's own training
images (or `--calibration DIR`) through the served preprocessing; dynamic int8 for text models;
fp16 for GPUs. Both files then run in ONNX Runtime on the validation split (or `--validation`),
and the variant must pass `onyx.train.export.gate`; a refused one raises `VariantRefused` with the
figures and nothing at all is published. A passing one is published right after the fp32
version, with its `Variant` (precision, method, gate figures, base version) in its model.pbtxt
and export.json. Requests that name no version keep getting the fp32 version; clients choose the
variant by its number (docs/variants.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onyx.contract.layout import CONFIG_FILE, MODEL_FILE
from onyx.contract.model_config import load_config
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import save_json
from onyx.train.engine import checkpoint as ckpt
from onyx.train.export.config import ExportConfig
from onyx.train.export.gate import (
    FP16_ATOL,
    FP16_RTOL,
    GateFigures,
    GateThresholds,
    check_gate,
    gate_figures,
    refusals,
)
from onyx.train.export.onnx import INPUT_NAME, OUTPUT_NAME, ir_version_of
from onyx.train.export.publish import publish
from onyx.train.export.quantize import (
    DEFAULT_INT8_FORMAT,
    FP32_PARTS,
    convert_fp16,
    leading_convolutions,
    prepare_for_quantization,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from onyx.train.tasks.image.data import Split, image_files, load_split, load_split_file
from onyx.train.tasks.labelled import (
    Prepare,
    image_prepare,
    labelled_samples,
    labelled_texts,
    text_prepare,
)

log = logging.getLogger(__name__)

PRECISIONS = {"int8": pb.PRECISION_INT8, "fp16": pb.PRECISION_FP16}
# Batch size for calibration and the gate's runs (memory: 32 x 3 x 224 x 224 floats = 19 MB).
BATCH = 32
# Static int8 attempts for CNNs, each gated alike: every convolution int8; then the first three
# (the stem: full resolution, where int8 loses the image's detail; EfficientNet-Lite0's first
# block, ~5% of its multiply-adds) kept in float32 (docs/variants.md).
STEM_ATTEMPTS = (0, 3)
DYNAMIC_METHOD = (
    "dynamic int8: int8 weights for LSTM, MatMul/Gemm and Gather, activations per batch"
)


class VariantDataError(ValueError):
    """The variant's calibration or validation data cannot be found."""


@dataclass(frozen=True)
class Labelled:
    items: list[Any]  # image paths or texts
    targets: np.ndarray  # (N,) label indices


@dataclass
class BuiltVariant:
    folder: Path  # model.onnx and side files, ready to publish
    config: pb.ModelConfig
    figures: GateFigures


def build_variant(
    export: ExportConfig,
    checkpoint: dict[str, Any],
    config: pb.ModelConfig,
    work_dir: Path,
    side_files: Callable[[Path], None],
) -> BuiltVariant:
    """Make `export.variant` from work_dir/model.onnx (the verified fp32 file) and gate it.
    Raises VariantRefused (with the figures) when it fails the gate."""
    folder = work_dir / "variant"
    folder.mkdir()
    fp32, target = work_dir / MODEL_FILE, folder / MODEL_FILE
    prepare = served_prepare(checkpoint)
    validation = validation_set(export, checkpoint)
    thresholds = thresholds_of(export)
    fp32_logits = run_logits(fp32, validation.items, prepare)
    attempts = stem_attempts(export, checkpoint)
    for attempt, stem in enumerate(attempts, 1):
        made = make_variant_file(export, checkpoint, fp32, target, prepare, stem)
        variant_logits = run_logits(target, validation.items, prepare)
        figures = gate_figures(fp32_logits, variant_logits, validation.targets, thresholds)
        log.info("%s variant (%s): %s", export.variant, made.method, figures.describe())
        if attempt == len(attempts) or not refusals(figures, thresholds):
            break
        log.info("refused (%s); retrying with the first %d convolutions in float32",
                 "; ".join(refusals(figures, thresholds)), attempts[attempt])  # fmt: skip
    check_gate(figures, thresholds, export.variant)
    side_files(folder)
    return BuiltVariant(folder, variant_config(export, config, target, made, figures), figures)


def stem_attempts(export: ExportConfig, checkpoint: dict[str, Any]) -> tuple[int, ...]:
    """How many leading convolutions each attempt keeps in float32 (static int8 CNNs only)."""
    if export.variant == "int8" and checkpoint["task"] == "image":
        return STEM_ATTEMPTS
    return (0,)


def thresholds_of(export: ExportConfig) -> GateThresholds:
    """The export's thresholds; fp16 is also held to a stated elementwise tolerance."""
    fp16 = export.variant == "fp16"
    return GateThresholds(
        export.max_accuracy_drop,
        export.min_agreement,
        atol=FP16_ATOL if fp16 else 0.0,
        rtol=FP16_RTOL if fp16 else 0.0,
    )


@dataclass(frozen=True)
class Made:
    method: str  # how the variant was made
    fp32_parts: str = ""  # what stays float32


def make_variant_file(
    export: ExportConfig,
    checkpoint: dict[str, Any],
    fp32: Path,
    target: Path,
    prepare: Prepare,
    stem: int = 0,
) -> Made:
    """Write the variant of `fp32` to `target`, keeping the first `stem` convolutions of a
    static int8 CNN in float32."""
    if export.variant == "fp16":
        convert_fp16(fp32, target)
        return Made("float16 inside, float32 inputs and outputs (ONNX Runtime float16 conversion)")
    prepared = target.with_name("prepared.onnx")
    prepare_for_quantization(fp32, prepared)
    try:
        if checkpoint["task"] == "text":
            quantize_int8_dynamic(prepared, target)
            cell = str(checkpoint.get("model_config", {}).get("cell", ""))
            return Made(DYNAMIC_METHOD, FP32_PARTS.get(cell, ""))
        paths, source = calibration_images(export, checkpoint)
        batches = [prepare(paths[i : i + BATCH]) for i in range(0, len(paths), BATCH)]
        kept = leading_convolutions(prepared, stem)
        quantize_int8_static(prepared, target, INPUT_NAME, batches, DEFAULT_INT8_FORMAT, kept)
    finally:
        prepared.unlink(missing_ok=True)
    method = (
        f"static int8 {DEFAULT_INT8_FORMAT.describe()}, per-channel int8 weights, MinMax "
        f"calibration on {len(paths)} {source} images"
    )
    return Made(method, f"the first {len(kept)} convolutions (the stem)" if kept else "")


def served_prepare(checkpoint: dict[str, Any]) -> Prepare:
    """The server's preprocessing of the checkpoint's inputs (image transform, or tokenizer)."""
    if checkpoint["task"] == "image":
        return image_prepare(ckpt.preprocessing_of(checkpoint))
    from onyx.contract.text import TextEncoder, Vocabulary

    vocabulary = Vocabulary(checkpoint["vocabulary"])
    return text_prepare(TextEncoder(vocabulary, checkpoint["max_length"], checkpoint["tokenizer"]))


def calibration_images(export: ExportConfig, checkpoint: dict[str, Any]) -> tuple[list[Path], str]:
    """At most `calibration_samples` images, drawn reproducibly, and where they came from."""
    if export.calibration != Path():
        if not export.calibration.is_dir():
            raise VariantDataError(f"--calibration {export.calibration}: not a folder of images")
        paths, source = image_files(export.calibration), str(export.calibration)
    else:
        paths, source = [s.path for s in training_split(export, checkpoint).train], "training"
    if not paths:
        raise VariantDataError(f"no calibration images found ({source})")
    if len(paths) > export.calibration_samples:
        chosen = np.random.default_rng(0).choice(len(paths), export.calibration_samples, False)
        paths = [paths[i] for i in sorted(chosen)]
    return paths, source


def training_split(export: ExportConfig, checkpoint: dict[str, Any]) -> Split:
    """The run's own split: split.json beside the checkpoint, else recomputed from its data."""
    saved = export.checkpoint.parent / "split.json"
    if export.checkpoint != Path() and saved.is_file():
        return load_split_file(saved)
    train = checkpoint["config"]
    data = Path(str(train.get("data", "")))
    if not data.is_dir():
        raise VariantDataError(
            f"the checkpoint's data {str(data)!r} is not here; give --calibration DIR and "
            "--validation DIR for the variant"
        )
    return load_split(data, float(train["val_fraction"]), int(train["seed"]))


def validation_set(export: ExportConfig, checkpoint: dict[str, Any]) -> Labelled:
    """The labelled examples the gate scores both files on."""
    labels = list(checkpoint["labels"])
    if checkpoint["task"] == "text":
        return _text_validation(export, checkpoint, labels)
    if export.validation != Path():
        samples = labelled_samples(export.validation, labels)
    else:
        samples = training_split(export, checkpoint).val
    return Labelled([s.path for s in samples], np.array([s.label for s in samples]))


def _text_validation(
    export: ExportConfig, checkpoint: dict[str, Any], labels: list[str]
) -> Labelled:
    from onyx.train.tasks.text.data import load_text_split

    train = checkpoint["config"]
    columns = (str(train.get("text_column", "text")), str(train.get("label_column", "label")))
    if export.validation != Path():
        texts, targets, _ = labelled_texts(export.validation, labels, columns)
        return Labelled(list(texts), np.array(targets))
    val_data = str(train.get("val_data") or "")
    split = load_text_split(
        Path(str(train["data"])),
        Path(val_data) if val_data else None,
        labels,
        float(train["val_fraction"]),
        int(train["seed"]),
        *columns,
    )
    targets = [labels.index(e.label) for e in split.val]
    return Labelled([e.text for e in split.val], np.array(targets))


def run_logits(path: Path, items: Sequence[Any], prepare: Prepare) -> np.ndarray:
    """(N, classes) logits of the file at `path` on `items`, in ONNX Runtime on the CPU."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    chunks = [
        session.run([OUTPUT_NAME], {INPUT_NAME: prepare(items[i : i + BATCH])})[0]
        for i in range(0, len(items), BATCH)
    ]
    return np.concatenate(chunks).astype(np.float32)


def variant_config(
    export: ExportConfig, config: pb.ModelConfig, path: Path, made: Made, figures: GateFigures
) -> pb.ModelConfig:
    """The fp32 version's config with the variant's provenance (base_version set on publish)."""
    result = pb.ModelConfig()
    result.CopyFrom(config)
    result.export.ir_version = ir_version_of(path)
    result.variant.CopyFrom(
        pb.Variant(
            precision=PRECISIONS[export.variant],
            method=made.method,
            fp32_parts=made.fp32_parts,
            validation_samples=figures.samples,
            fp32_accuracy=figures.fp32_accuracy,
            accuracy=figures.accuracy,
            agreement=figures.agreement,
            max_abs_diff=figures.max_abs_diff,
            max_accuracy_drop=export.max_accuracy_drop,
            min_agreement=export.min_agreement,
        )
    )
    result.description = f"{config.description} ({export.variant} variant)"
    return result


def publish_variant(
    export: ExportConfig, provenance: dict[str, Any], variant: BuiltVariant, base_version: int
) -> int:
    """Publish the gated variant as the version after its fp32 `base_version`."""
    variant.config.variant.base_version = base_version
    figures = variant.figures
    gate = {**figures.__dict__, "accuracy_drop_points": figures.accuracy_drop}
    save_json({**provenance, "variant": {"base_version": base_version, "gate": gate}},
              variant.folder / "export.json")  # fmt: skip
    version, _ = publish(export.repository, variant.config, variant.folder)
    return version


def keep_fp32_served(export: ExportConfig, config: pb.ModelConfig) -> None:
    """A new model serves the two newest versions (fp32 and its variant); an existing model's
    policy is its owner's, so only warn when it would leave the fp32 version unserved."""
    path = export.repository / export.name / CONFIG_FILE
    if not path.is_file():
        config.version_policy.latest.num_versions = 2
        return
    policy = load_config(path).version_policy
    kind = policy.WhichOneof("policy")
    if kind is None or (kind == "latest" and policy.latest.num_versions < 2):
        log.warning(
            "%s serves only the newest version: the fp32 version will not be served beside the "
            "%s variant (set version_policy { latest { num_versions: 2 } })", path, export.variant
        )  # fmt: skip
