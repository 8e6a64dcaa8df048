"""Explanations on the serving side, torch-free: the numpy Grad-CAM pieces, geometry, and the
wiring through Classify, KServe's `saliency` output and the metrics, on a GAP model built with
`onnx.helper` (conv -> ReLU -> global mean -> linear head)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from prometheus_client import CollectorRegistry

from onyx.client.classifier import Client
from onyx.contract import gradcam as cam
from onyx.contract.preprocess import image_bytes_to_array
from onyx.contract.text import normalize, tokenize
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.serve.explain.classify import saliency
from onyx.serve.explain.text import occlusion_rows, occlusion_scores, token_spans
from onyx.serve.metrics import ServerMetrics
from onyx.serve.observers import NO_OBSERVERS
from onyx.serve.pipeline import Inferred
from tests.serve.tiny_models import (
    IR_VERSION,
    LABELS,
    OPSET,
    png_bytes,
    write_image_model,
    write_model_config,
)

SIZE, CHANNELS = 16, 4
StartServer = Callable[..., ServerThread]


def gap_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    conv = rng.normal(size=(CHANNELS, 3, 3, 3)).astype(np.float32)
    conv_b = rng.normal(size=(CHANNELS,)).astype(np.float32) * 0.1
    w = rng.normal(size=(len(LABELS), CHANNELS)).astype(np.float32)
    b = rng.normal(size=(len(LABELS),)).astype(np.float32)
    return conv, conv_b, w, b


def gap_graph() -> onnx.ModelProto:
    conv, conv_b, w, b = gap_weights()
    nodes = [
        helper.make_node("Conv", ["image", "conv", "conv_b"], ["pre"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["pre"], ["feature_map"]),
        helper.make_node("ReduceMean", ["feature_map"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(conv, "conv"),
        numpy_helper.from_array(conv_b, "conv_b"),
        numpy_helper.from_array(np.ascontiguousarray(w.T), "w"),
        numpy_helper.from_array(b, "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "gap",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)]),
            helper.make_tensor_value_info(
                "feature_map", TensorProto.FLOAT, ["batch", CHANNELS, SIZE, SIZE]
            ),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def gap_config(resize_shorter: int = 0) -> pb.ModelConfig:
    config = pb.ModelConfig(
        name="gap",
        task=pb.TASK_IMAGE,
        labels=LABELS,
        input=pb.TensorSpec(name="image", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 3, SIZE, SIZE]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, len(LABELS)]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        batching=pb.Batching(max_batch_size=8),
        explain=pb.ExplainSupport(
            feature_map=pb.TensorSpec(
                name="feature_map", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, CHANNELS, -1, -1]
            ),
            head_file=cam.HEAD_FILE,
        ),
    )
    config.image.CopyFrom(
        pb.ImagePreprocessing(
            resize_shorter=resize_shorter, crop_height=SIZE, crop_width=SIZE,
            interpolation=pb.INTERPOLATION_BILINEAR, color_mode=pb.COLOR_MODE_RGB,
            channel_order=pb.CHANNEL_ORDER_RGB, layout=pb.LAYOUT_NCHW,
            mean=[0.5] * 3, std=[0.5] * 3,
        )
    )  # fmt: skip
    return config


def write_gap_model(root: Path, resize_shorter: int = 0) -> Path:
    from onyx.contract.layout import MODEL_FILE, VERSION_CONFIG_FILE
    from onyx.contract.model_config import save_version_config, split_config

    config = gap_config(resize_shorter)
    write_model_config(root, config)
    folder = root / "gap" / "1"
    folder.mkdir(parents=True)
    onnx.save(gap_graph(), str(folder / MODEL_FILE))
    _, description = split_config(config)
    save_version_config(description, folder / VERSION_CONFIG_FILE)
    _, _, w, b = gap_weights()
    cam.save_head(cam.Head(w.astype(np.float64), b.astype(np.float64)), folder / cam.HEAD_FILE)
    return folder


def expected_maps(model_file: Path, image: bytes, config: pb.ModelConfig) -> np.ndarray:
    """ReLU(sum_k w[c, k] A_k) / max for every class, straight from ONNX Runtime's feature map."""
    x = image_bytes_to_array(image, config.image)[None]
    _, features = ort.InferenceSession(str(model_file)).run(None, {"image": x})
    _, _, w, _ = gap_weights()
    maps = np.maximum(np.einsum("ck,khw->chw", w.astype(np.float64), features[0]), 0)
    return maps / maps.reshape(len(maps), -1).max(axis=1)[:, None, None]


@pytest.fixture
def gap_repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_gap_model(root)
    write_image_model(root, "tiny", 1)  # no feature map: cannot explain
    return root


def grid_of(heatmap: api.Heatmap) -> np.ndarray:
    return np.asarray(heatmap.values).reshape(heatmap.rows, heatmap.cols)


def test_classify_explains_top1_and_named_classes(
    gap_repo: Path, start_server: StartServer
) -> None:
    server = start_server(gap_repo)
    images = [png_bytes(seed, SIZE) for seed in range(3)]
    expected = [expected_maps(gap_repo / "gap/1/model.onnx", i, gap_config()) for i in images]
    with Client(server.address) as client:
        inputs = [api.Input(image=i) for i in images]
        plain = client.classify("gap", inputs, top_k=3)
        top1 = client.classify("gap", inputs, top_k=3, explain=api.ExplainOptions())
        named = client.classify("gap", inputs, explain=api.ExplainOptions(labels=["fox", "cat"]))
    for i, result in enumerate(top1.results):
        assert result.classes == plain.results[i].classes  # explaining changes no score
        assert not plain.results[i].explanations
        (explanation,) = result.explanations
        assert explanation.index == result.classes[0].index
        assert np.allclose(grid_of(explanation.heatmap), expected[i][explanation.index], atol=1e-5)
        heatmap = explanation.heatmap
        assert (heatmap.rows, heatmap.cols, heatmap.image_width, heatmap.width) == (16, 16, 16, 16)
    for i, result in enumerate(named.results):
        assert [(e.label, e.index) for e in result.explanations] == [("fox", 2), ("cat", 0)]
        for e in result.explanations:
            assert np.allclose(grid_of(e.heatmap), expected[i][e.index], atol=1e-5)


def test_a_model_without_a_feature_map_is_failed_precondition(
    gap_repo: Path, start_server: StartServer
) -> None:
    server = start_server(gap_repo)
    with Client(server.address) as client:
        request = [api.Input(image=png_bytes(0))]
        assert client.classify("tiny", request).results  # plain Classify still works
        with pytest.raises(grpc.RpcError) as error:
            client.classify("tiny", request, explain=api.ExplainOptions())
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot explain" in str(error.value.details())


def test_unknown_label_is_invalid_argument(gap_repo: Path, start_server: StartServer) -> None:
    server = start_server(gap_repo)
    with Client(server.address) as client, pytest.raises(grpc.RpcError) as error:
        options = api.ExplainOptions(labels=["wolf"])
        client.classify("gap", [api.Input(image=png_bytes(0, SIZE))], explain=options)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'wolf'" in str(error.value.details()) and "cat, dog, fox" in str(error.value.details())


def test_kserve_returns_saliency_only_when_asked_by_name(
    gap_repo: Path, start_server: StartServer
) -> None:
    server = start_server(gap_repo)
    image = png_bytes(1, SIZE)
    expected = expected_maps(gap_repo / "gap/1/model.onnx", image, gap_config())
    x = image_bytes_to_array(image, gap_config().image)[None]
    request = kv2.ModelInferRequest(
        model_name="gap",
        inputs=[
            kv2.ModelInferRequest.InferInputTensor(
                name="image", datatype="FP32", shape=[1, 3, SIZE, SIZE]
            )
        ],
        raw_input_contents=[x.tobytes()],
    )
    with grpc.insecure_channel(server.address) as channel:
        stub = kv2_grpc.GRPCInferenceServiceStub(channel)
        plain = stub.ModelInfer(request)
        wanted = kv2.ModelInferRequest.InferRequestedOutputTensor
        request.outputs.extend([wanted(name="logits"), wanted(name="saliency")])
        both = stub.ModelInfer(request)
    assert [o.name for o in plain.outputs] == ["logits"]
    assert [(o.name, o.datatype, list(o.shape)) for o in both.outputs] == [
        ("logits", "FP32", [1, 3]),
        ("saliency", "FP32", [1, SIZE, SIZE]),
    ]
    logits = np.frombuffer(both.raw_output_contents[0], "<f4")
    saliency = np.frombuffer(both.raw_output_contents[1], "<f4").reshape(SIZE, SIZE)
    assert np.allclose(saliency, expected[int(np.argmax(logits))], atol=1e-5)


def test_metrics_count_explained_requests_and_their_extra_time(gap_repo: Path) -> None:
    metrics = ServerMetrics(CollectorRegistry(), process=False)
    config = ServerConfig(repository=gap_repo, host="127.0.0.1", port=0)
    with ServerThread(config, metrics=metrics) as server, Client(server.address) as client:
        inputs = [api.Input(image=png_bytes(0, SIZE))]
        client.classify("gap", inputs)
        client.classify("gap", inputs, explain=api.ExplainOptions())
        client.classify("gap", inputs, explain=api.ExplainOptions())
    labels = {"model": "gap", "version": "1"}
    sample = metrics.registry.get_sample_value
    assert sample("onyx_explained_requests_total", labels) == 2
    assert sample("onyx_explain_duration_seconds_count", labels) == 2
    assert sample("onyx_requests_total", {**labels, "code": "OK"}) == 3


def test_heatmaps_are_placed_on_the_image_as_sent_exif_orientation_included(
    tmp_path: Path,
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    root = tmp_path / "models"
    write_gap_model(root, resize_shorter=20)
    pixels = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)  # 50 x 30
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the image as seen is 30 wide, 50 high
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", exif=exif)
    server = start_server(root)
    with Client(server.address) as client:
        response = client.classify(
            "gap", [api.Input(image=buffer.getvalue())], explain=api.ExplainOptions()
        )
    heatmap = response.results[0].explanations[0].heatmap
    assert (heatmap.image_width, heatmap.image_height) == (30, 50)
    # Shorter side 30 -> 20 (x 2/3): 20 x 33, centre crop 16 x 16 from (2, 8) -> / (2/3).
    assert heatmap.width == pytest.approx(16 * 30 / 20)
    assert heatmap.height == pytest.approx(16 * 50 / 33)
    assert heatmap.x == pytest.approx(2 * 30 / 20)
    assert heatmap.y == pytest.approx(8 * 50 / 33)


# --- the numpy pieces ------------------------------------------------------------------------


def test_bilinear_weights_use_half_pixel_centres() -> None:
    assert np.allclose(cam.interpolation_matrix(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    assert np.allclose(cam.interpolation_matrix(5, 5), np.eye(5))


def test_mlp_head_gradient_equals_finite_differences() -> None:
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(12, 6)), rng.normal(size=12) * 3
    w2, b2 = rng.normal(size=(4, 12)), rng.normal(size=4)
    head = cam.Head(w2, b2, w1, b1, "hardswish")

    def scores(p: np.ndarray) -> np.ndarray:
        h = w1 @ p + b1
        return w2 @ (h * np.clip(h + 3, 0, 6) / 6) + b2

    p = rng.normal(size=6)
    grads = cam.class_gradients(head, p, np.arange(4))
    eps = 1e-6
    numeric = np.stack(
        [(scores(p + eps * e) - scores(p - eps * e)) / (2 * eps) for e in np.eye(6)], axis=1
    )
    assert np.allclose(grads, numeric, atol=1e-5)


def test_saliency_reads_the_feature_map_the_config_names_at_its_own_size(tmp_path: Path) -> None:
    """The feature map comes by the output name the config gives it (here not export's), and
    its (h, w) from its own shape: a 2 x 5 map explains as Grad-CAM on it says."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, len(LABELS))).astype(np.float32)
    features = rng.random(size=(2, CHANNELS, 2, 5)).astype(np.float32)
    _, _, w, b = gap_weights()
    head = cam.Head(w.astype(np.float64), b.astype(np.float64))
    cam.save_head(head, tmp_path / cam.HEAD_FILE)
    config = gap_config()
    config.explain.feature_map.name = "last_conv"
    outputs = {"logits": logits, "last_conv": features}
    maps_served = saliency(Inferred("gap", 1, config, outputs, tmp_path), NO_OBSERVERS.explained)
    assert maps_served.shape == (2, SIZE, SIZE) and maps_served.dtype == np.float32
    for i in range(2):
        maps = cam.grad_cam(features[i], head, np.asarray([int(np.argmax(logits[i]))]))
        expected = cam.normalise(cam.resize_bilinear(maps, SIZE, SIZE))[0]
        np.testing.assert_allclose(maps_served[i], expected, atol=1e-6)


def test_token_spans_follow_the_tokenizer_back_to_the_original_text() -> None:
    text = "The movie WASN'T bad — “Café” cannot\u00a0lose!"
    spans = token_spans(text)
    assert [token for token, _, _ in spans] == tokenize(text)
    for token, start, end in spans:
        piece = normalize(text[start:end])
        assert piece == token or (token, piece) in {("was", "was"), ("not", "n't")}
    assert text[spans[2][1] : spans[2][2]] == "WAS" and text[spans[3][1] : spans[3][2]] == "N'T"


def test_occlusion_rows_leave_out_each_token_once() -> None:
    rows = occlusion_rows(np.asarray([5, 6, 7]), pad_id=0)
    assert rows.tolist() == [[5, 6, 7], [6, 7, 0], [5, 7, 0], [5, 6, 0]]
    scores = np.asarray([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    assert np.allclose(occlusion_scores(scores, 1), [0.1, 0.6, 0.0])


def test_cli_writes_overlays_with_colour_bar_label_and_score(
    gap_repo: Path, start_server: StartServer, tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from onyx.cli import main

    server = start_server(gap_repo)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(2, 40))
    out_dir = tmp_path / "overlays"
    args = ["classify", "--model", "gap", "-s", server.address, "--explain", str(photo)]
    result = CliRunner().invoke(main, [*args, "--out-dir", str(out_dir), "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.output)
    (explanation,) = record["explanations"]
    assert explanation["label"] == record["classes"][0]["label"]
    with Image.open(explanation["overlay"]) as picture:
        assert picture.width > 40 and picture.height > 40  # the photo, colour bar and caption
    assert Path(explanation["overlay"]).parent == out_dir
    table = CliRunner().invoke(main, [*args, "--out-dir", str(out_dir)])
    assert table.exit_code == 0 and "wrote " in table.output
    folder = CliRunner().invoke(main, [*args[:-1], str(tmp_path)])
    assert folder.exit_code != 0 and "not a folder" in folder.output
