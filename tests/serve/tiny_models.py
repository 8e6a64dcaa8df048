"""Tiny ONNX models and their configs for serving tests, built with `onnx.helper` (no torch).

    write_image_model(root, "tiny", version=1)   # root/tiny/config.pbtxt (policy) and
                                                 # root/tiny/1/{model.onnx,model.pbtxt}
    write_version(root, "tiny", 2, config=image_config(labels=["ant", "bee", "cow"]))

The "image" model is Flatten -> MatMul -> Add over a 3x8x8 RGB input with three labels; its
weights depend only on the seed, so expected scores can be computed with numpy (`reference`).
`hidden_layers` adds a chain of wide MatMuls to make a batch take measurable compute.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from onyx.contract.layout import CONFIG_FILE, MODEL_FILE, VERSION_CONFIG_FILE
from onyx.contract.model_config import save_config, save_version_config, split_config
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.version import ModelVersion

SIZE = 8
LABELS = ["cat", "dog", "fox"]
FEATURES = 3 * SIZE * SIZE
# An ONNX Runtime of 2024 or later loads these; newer defaults of the `onnx` package may not.
OPSET = 17
IR_VERSION = 9


def image_config(
    name: str = "tiny",
    max_batch_size: int = 8,
    max_queue_delay_us: int = 2000,
    max_queue_size: int = 0,
    instances: int = 1,
    labels: Sequence[str] = LABELS,
) -> pb.ModelConfig:
    """The whole config (policy and per-version facts); writers split it as publishing does."""
    config = pb.ModelConfig(
        name=name,
        task=pb.TASK_IMAGE,
        labels=labels,
        input=pb.TensorSpec(name="image", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 3, SIZE, SIZE]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, len(LABELS)]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        batching=pb.Batching(
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            max_queue_size=max_queue_size,
        ),
        instances=instances,
    )
    config.image.CopyFrom(
        pb.ImagePreprocessing(
            resize_shorter=0,
            crop_height=SIZE,
            crop_width=SIZE,
            interpolation=pb.INTERPOLATION_BILINEAR,
            color_mode=pb.COLOR_MODE_RGB,
            channel_order=pb.CHANNEL_ORDER_RGB,
            layout=pb.LAYOUT_NCHW,
            mean=[0.5, 0.5, 0.5],
            std=[0.5, 0.5, 0.5],
        )
    )
    return config


def weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(FEATURES, len(LABELS))).astype(np.float32) * 0.1
    b = rng.normal(size=(len(LABELS),)).astype(np.float32)
    return w, b


def reference(batch: np.ndarray, seed: int) -> np.ndarray:
    """The logits the model built with `seed` (and no hidden layers) gives for `batch`."""
    w, b = weights(seed)
    return np.asarray(batch.reshape(len(batch), -1) @ w + b)


def image_graph(seed: int = 1, hidden_layers: int = 0, width: int = 1024) -> onnx.ModelProto:
    w, b = weights(seed)
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1)]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    current = "flat"
    if hidden_layers:
        rng = np.random.default_rng(seed + 1000)
        inits.append(numpy_helper.from_array(np.eye(FEATURES, width, dtype=np.float32), "up"))
        inits.append(numpy_helper.from_array(np.eye(width, FEATURES, dtype=np.float32), "down"))
        nodes.append(helper.make_node("MatMul", [current, "up"], ["h0"]))
        for i in range(hidden_layers):
            noise = (rng.normal(size=(width, width)) * 1e-4).astype(np.float32)
            inits.append(numpy_helper.from_array(np.eye(width, dtype=np.float32) + noise, f"m{i}"))
            nodes.append(helper.make_node("MatMul", [f"h{i}", f"m{i}"], [f"h{i + 1}"]))
        nodes.append(helper.make_node("MatMul", [f"h{hidden_layers}", "down"], ["flat2"]))
        current = "flat2"
    nodes += [
        helper.make_node("MatMul", [current, "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_version(
    root: Path,
    name: str,
    version: int,
    seed: int = 1,
    hidden_layers: int = 0,
    config: pb.ModelConfig | None = None,
    describe: bool = True,
) -> Path:
    """Write `root/name/version/` (model.onnx, and model.pbtxt from the per-version part of
    `config` unless `describe` is off) atomically: a polling server never sees half a folder."""
    folder = root / name / str(version)
    staging = root / name / f".staging-{version}"
    staging.mkdir(parents=True, exist_ok=True)
    onnx.save(image_graph(seed, hidden_layers), str(staging / MODEL_FILE))
    if describe:
        _policy, description = split_config(config or image_config(name))
        save_version_config(description, staging / VERSION_CONFIG_FILE)
    staging.rename(folder)
    return folder / MODEL_FILE


def write_corrupt_version(root: Path, name: str, version: int) -> Path:
    folder = root / name / f".staging-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(b"this is not an onnx file")
    _policy, description = split_config(image_config(name))
    save_version_config(description, folder / VERSION_CONFIG_FILE)
    folder.rename(root / name / str(version))
    return root / name / str(version) / MODEL_FILE


def write_image_model(
    root: Path,
    name: str = "tiny",
    version: int = 1,
    config: pb.ModelConfig | None = None,
    seed: int = 1,
    hidden_layers: int = 0,
) -> Path:
    """A whole model as publishing lays it out: config.pbtxt holding the serving policy, plus
    one self-describing version; returns the model folder."""
    config = config or image_config(name)
    (root / name).mkdir(parents=True, exist_ok=True)
    write_model_config(root, config)
    write_version(root, name, version, seed, hidden_layers, config)
    return root / name


def write_model_config(root: Path, config: pb.ModelConfig) -> None:
    """`root/<name>/config.pbtxt` with the serving policy of `config` only."""
    policy, _description = split_config(config)
    (root / config.name).mkdir(parents=True, exist_ok=True)
    save_config(policy, root / config.name / CONFIG_FILE)


def write_old_layout_model(root: Path, name: str = "tiny", version: int = 1) -> Path:
    """A model as onyx 0.2 wrote it: every fact in config.pbtxt, no model.pbtxt per version."""
    (root / name).mkdir(parents=True, exist_ok=True)
    save_config(image_config(name), root / name / CONFIG_FILE)
    write_version(root, name, version, describe=False)
    return root / name


def random_batch(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 3, SIZE, SIZE)).astype(np.float32)


def png_bytes(seed: int = 0, size: int = SIZE) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


TEXT_TOKENS = ("<pad>", "<unk>", "good", "bad", "not")


def text_config(name: str = "words", max_length: int = 16) -> pb.ModelConfig:
    """A two-class text model's config: int64 token ids in, logits out; pad 0, unknown 1."""
    from onyx.contract.text import TOKENIZER_NAME

    return pb.ModelConfig(
        name=name,
        task=pb.TASK_TEXT,
        labels=["negative", "positive"],
        input=pb.TensorSpec(name="input", dtype=pb.DATA_TYPE_INT64, dims=[-1, -1]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 2]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        text=pb.TextPreprocessing(
            vocabulary_file="vocab.txt",
            max_length=max_length,
            pad_id=0,
            unk_id=1,
            tokenizer=TOKENIZER_NAME,
        ),
        batching=pb.Batching(max_batch_size=4),
    )


def write_text_model(
    root: Path,
    name: str = "words",
    version: int = 1,
    max_length: int = 16,
    tokens: Sequence[str] = TEXT_TOKENS,
) -> pb.ModelConfig:
    """Embedding lookup -> mean over time -> 2 logits, with its vocabulary (no torch).

    The version folder gets model.onnx, vocab.txt and its model.pbtxt; config.pbtxt (policy) is
    written when the model has none, as publishing does. Returns the version's whole config."""
    from onyx.contract.text import Vocabulary

    vocabulary = Vocabulary(list(tokens))
    config = text_config(name, max_length)
    embedding = np.random.default_rng(0).standard_normal((len(tokens), 2)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input"], ["vectors"]),
            helper.make_node("ReduceMean", ["vectors"], ["logits"], axes=[1], keepdims=0),
        ],
        "words",
        [helper.make_tensor_value_info("input", TensorProto.INT64, ["batch", "time"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(embedding, "embedding")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    staging = root / name / f".staging-{version}"
    staging.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(staging / MODEL_FILE))
    vocabulary.save(staging / "vocab.txt")
    save_version_config(split_config(config)[1], staging / VERSION_CONFIG_FILE)
    if not (root / name / CONFIG_FILE).exists():
        write_model_config(root, config)
    staging.rename(root / name / str(version))
    return config


async def infer_all_checked(version: ModelVersion, batches: Sequence[np.ndarray]) -> None:
    """Send `batches` to `version` all at once; each answer must be the reference model's
    (the tiny image model written with seed 1)."""
    outputs = await asyncio.gather(*(version.infer(batch) for batch in batches))
    for batch, output in zip(batches, outputs, strict=True):
        np.testing.assert_allclose(output["logits"], reference(batch, seed=1), rtol=1e-5, atol=1e-5)
