"""Builders for configs and tiny ONNX models, so serve tests need no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.model_config import CONFIG_FILE, save_config


def image_config(
    name: str = "tiny", labels: tuple[str, ...] = ("a", "b", "c"), size: int = 4
) -> pb.ModelConfig:
    return pb.ModelConfig(
        name=name,
        task=pb.TASK_IMAGE,
        labels=list(labels),
        input=pb.TensorSpec(name="input", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 1, size, size]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, len(labels)]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        image=pb.ImagePreprocessing(
            resize_shorter=0,
            crop_height=size,
            crop_width=size,
            interpolation=pb.INTERPOLATION_BILINEAR,
            color_mode=pb.COLOR_MODE_GRAYSCALE,
            channel_order=pb.CHANNEL_ORDER_RGB,
            layout=pb.LAYOUT_NCHW,
            mean=[0.5],
            std=[0.25],
        ),
        batching=pb.Batching(max_batch_size=4, max_queue_delay_us=500),
    )


def linear_image_model(path: Path, size: int = 4, classes: int = 3, seed: int = 0) -> np.ndarray:
    """Flatten -> MatMul -> Add; returns the weight matrix so tests can compute expectations."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((size * size, classes)).astype(np.float32)
    bias = rng.standard_normal(classes).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weight"], ["mm"]),
            helper.make_node("Add", ["mm", "bias"], ["logits"]),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weight


def add_image_model(repository: Path, name: str = "tiny", version: int = 1) -> pb.ModelConfig:
    config = image_config(name)
    (repository / name).mkdir(parents=True, exist_ok=True)
    save_config(config, repository / name / CONFIG_FILE)
    linear_image_model(repository / name / str(version) / "model.onnx")
    return config


def add_text_model(repository: Path, name: str = "words", version: int = 1) -> pb.ModelConfig:
    """Embedding lookup -> mean over time -> 2 logits, with its vocabulary (no torch)."""
    from onyx.serve.text import TOKENIZER_NAME, Vocabulary

    vocabulary = Vocabulary(["<pad>", "<unk>", "good", "bad", "not"])
    config = pb.ModelConfig(
        name=name,
        task=pb.TASK_TEXT,
        labels=["negative", "positive"],
        input=pb.TensorSpec(name="input", dtype=pb.DATA_TYPE_INT64, dims=[-1, -1]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 2]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        text=pb.TextPreprocessing(
            vocabulary_file="vocab.txt", max_length=16, pad_id=0, unk_id=1, tokenizer=TOKENIZER_NAME
        ),
        batching=pb.Batching(max_batch_size=4),
    )
    embedding = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input"], ["vectors"]),
            helper.make_node("ReduceMean", ["vectors", "axis"], ["logits"], keepdims=0),
        ],
        "words",
        [helper.make_tensor_value_info("input", TensorProto.INT64, ["batch", "time"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(embedding, "embedding"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder = repository / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    vocabulary.save(folder / "vocab.txt")
    save_config(config, repository / name / CONFIG_FILE)
    return config
