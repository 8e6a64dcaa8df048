"""KServe v2 with the standard client, `tritonclient[grpc]`: health, metadata, infer.

tritonclient registers the same `inference.*` protobuf names as our stubs, and one process cannot
hold both, so the client runs in a subprocess against a server on port 0.

    python -m pytest tests/serve/frontends/test_kserve.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from onyx.contract.preprocess import image_bytes_to_array
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.serve.background import ServerThread
from onyx.serve.protocol import join_bytes, split_bytes
from tests.serve.tiny_models import image_config, png_bytes, random_batch, reference
from tests.serve.wire import softmax

CLIENT = textwrap.dedent(
    """
    import json, queue, sys
    import numpy as np
    import tritonclient.grpc as tc

    address, batch_file, png_file = sys.argv[1:4]
    client = tc.InferenceServerClient(address)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("tiny"),
        "missing_ready": client.is_model_ready("nope"),
        "server": client.get_server_metadata(as_json=True),
        "model": client.get_model_metadata("tiny", as_json=True),
    }
    batch = np.load(batch_file)
    x = tc.InferInput("image", list(batch.shape), "FP32")
    x.set_data_from_numpy(batch)
    result = client.infer("tiny", [x], outputs=[tc.InferRequestedOutput("logits")])
    out["logits"] = result.as_numpy("logits").tolist()
    out["version"] = result.get_response().model_version
    top = client.infer("tiny", [x], outputs=[tc.InferRequestedOutput("logits", class_count=2)])
    out["top2"] = [[s.decode() for s in row] for row in top.as_numpy("logits")]
    images = tc.InferInput("image", [1], "BYTES")
    images.set_data_from_numpy(np.array([open(png_file, "rb").read()], dtype=object))
    result = client.infer("tiny", [images])
    out["image_logits"] = result.as_numpy("logits").tolist()
    try:
        bad = tc.InferInput("image", [1, 3, 8, 9], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3, 8, 9), np.float32))
        client.infer("tiny", [bad])
    except tc.InferenceServerException as exc:
        out["bad"] = [exc.status(), exc.message()]
    out["config"] = client.get_model_config("tiny", as_json=True)["config"]
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("tiny", [x], request_id="good")
    client.async_stream_infer("nope", [x], request_id="bad")
    streamed = {}
    for _ in range(2):
        result, error = answers.get(timeout=60)
        if error is None:
            streamed[result.get_response().id] = result.as_numpy("logits").tolist()
        else:
            streamed["error"] = error.message()
    client.stop_stream()
    out["streamed"] = streamed
    print(json.dumps(out))
    """
)


def run_client(address: str, tmp_path: Path, batch: np.ndarray, png: bytes) -> dict[str, Any]:
    np.save(tmp_path / "batch.npy", batch)
    (tmp_path / "image.png").write_bytes(png)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENT,
            address,
            str(tmp_path / "batch.npy"),
            str(tmp_path / "image.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_tritonclient_health_metadata_and_infer(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(repo)
    batch = random_batch(3)
    png = png_bytes(7)
    out = run_client(server.address, tmp_path, batch, png)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert not out["missing_ready"]
    assert out["server"]["name"] == "onyx"
    assert "classification" in out["server"]["extensions"]
    image_input = {"name": "image", "datatype": "FP32", "shape": ["-1", "3", "8", "8"]}
    # The BYTES alternative (encoded images) is declared too, for perf_analyzer's --input-data.
    bytes_input = {"name": "image_bytes", "datatype": "BYTES", "shape": ["-1", "1"]}
    assert out["model"]["inputs"] == [image_input, bytes_input]
    assert out["model"]["outputs"][0]["name"] == "logits"
    assert out["version"] == "1"
    np.testing.assert_allclose(out["logits"], reference(batch, seed=1), rtol=1e-5, atol=1e-5)
    scores = softmax(reference(batch, seed=1))
    labels = image_config().labels
    for row, top in zip(scores, out["top2"], strict=True):
        order = np.argsort(-row)[:2]
        assert [t.split(":", 1)[1] for t in top] == [f"{i}:{labels[i]}" for i in order]
        assert float(top[0].split(":")[0]) == pytest.approx(row[order[0]], abs=1e-5)
    image = image_bytes_to_array(png, image_config().image)[None]
    np.testing.assert_allclose(out["image_logits"], reference(image, seed=1), rtol=1e-5, atol=1e-5)
    assert out["config"]["max_batch_size"] == 8
    assert out["config"]["input"] == [
        {"name": "image", "data_type": "TYPE_FP32", "dims": ["3", "8", "8"], "optional": True},
        {"name": "image_bytes", "data_type": "TYPE_STRING", "dims": ["1"], "optional": True},
    ]
    np.testing.assert_allclose(out["streamed"]["good"], out["logits"], rtol=1e-6)
    assert "model 'nope' not found" in out["streamed"]["error"]
    assert out["bad"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "does not match" in out["bad"][1]


def test_typed_contents_and_repository_index(
    repo: Path, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(repo)
    kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    batch = random_batch(2)
    tensor = kv2.ModelInferRequest.InferInputTensor(
        name="image",
        datatype="FP32",
        shape=list(batch.shape),
        contents=kv2.InferTensorContents(fp32_contents=batch.ravel().tolist()),
    )
    response = kserve.ModelInfer(kv2.ModelInferRequest(model_name="tiny", inputs=[tensor]))
    shape = response.outputs[0].shape
    logits = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(shape)
    np.testing.assert_allclose(logits, reference(batch, seed=1), rtol=1e-5, atol=1e-5)
    index = kserve.RepositoryIndex(kv2.RepositoryIndexRequest(ready=True))
    assert [(m.name, m.version, m.state) for m in index.models] == [("tiny", "1", "READY")]
    for version in ("²", "01", "-1", "v1"):  # a version is written as plain ASCII digits
        request = kv2.ModelInferRequest(model_name="tiny", model_version=version, inputs=[tensor])
        with pytest.raises(grpc.RpcError) as caught:
            kserve.ModelInfer(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, version
        assert "positive integer" in str(caught.value.details())


def test_bytes_layout_round_trips() -> None:
    items = [b"", b"abc", bytes(300)]
    assert split_bytes(join_bytes(items)) == items
    with pytest.raises(Exception, match="inside an element"):
        split_bytes(join_bytes(items)[:-1])
