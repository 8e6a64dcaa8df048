"""KServe v2's REST binding (`--http-port`): the standard client `tritonclient.http`, unchanged,
and plain HTTP requests for health, errors and the binary-data extension.

    python -m pytest tests/serve/frontends/test_rest.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onyx.contract.preprocess import image_bytes_to_array
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig, TlsConfig
from onyx.serve.protocol import join_bytes
from onyx.serve.server import create_server
from tests.checkout import PYTHONPATH
from tests.serve.test_process import ROOT, self_signed
from tests.serve.tiny_models import (
    image_config,
    png_bytes,
    random_batch,
    reference,
    write_image_model,
    write_text_model,
)
from tests.serve.wire import softmax

Start = Callable[..., ServerThread]


@pytest.fixture
def server(tmp_path: Path, start_server: Start) -> ServerThread:
    """Image model "tiny" and text model "words", with the REST binding on a free port."""
    root = tmp_path / "models"
    write_image_model(root, "tiny", 1)
    write_text_model(root)
    return start_server(root, http_port=0, metrics=False)


def base_url(server: ServerThread) -> str:
    assert server.running is not None and server.running.http_port is not None
    return f"http://127.0.0.1:{server.running.http_port}"


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], bytes]:
    """(status, headers, body) of one request; error statuses are answers too."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# tritonclient.http runs on gevent, whose client must be closed (and collected) in the thread
# that made it; the server's thread may collect it here, so the client runs in a subprocess.
CLIENT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tritonclient.http as th

    url, batch_file, png_file = sys.argv[1:4]
    triton = th.InferenceServerClient(url)
    out = {
        "live": triton.is_server_live(),
        "ready": triton.is_server_ready(),
        "model_ready": [triton.is_model_ready("tiny"), triton.is_model_ready("tiny", "1")],
        "missing_ready": triton.is_model_ready("nope"),
        "server": triton.get_server_metadata(),
        "model": triton.get_model_metadata("tiny"),
        "words_model": triton.get_model_metadata("words"),
        "config": triton.get_model_config("tiny"),
    }
    batch = np.load(batch_file)
    for binary in (True, False):  # the binary-data extension, and plain JSON tensors
        x = th.InferInput("image", list(batch.shape), "FP32")
        x.set_data_from_numpy(batch, binary_data=binary)
        wanted = th.InferRequestedOutput("logits", binary_data=binary)
        result = triton.infer("tiny", [x], outputs=[wanted], request_id="r1")
        out[f"logits_{binary}"] = result.as_numpy("logits").tolist()
        out["response"] = {k: v for k, v in result.get_response().items() if k != "outputs"}
    top = triton.infer("tiny", [x], outputs=[th.InferRequestedOutput("logits", class_count=2)])
    out["top2"] = [[s.decode() for s in row] for row in top.as_numpy("logits")]
    images = th.InferInput("image_bytes", [1], "BYTES")
    images.set_data_from_numpy(np.array([open(png_file, "rb").read()], dtype=object))
    out["image_logits"] = triton.infer("tiny", [images]).as_numpy("logits").tolist()
    texts = th.InferInput("text", [2, 1], "BYTES")
    texts.set_data_from_numpy(np.array([[b"good"], [b"not bad"]], dtype=object))
    top1 = th.InferRequestedOutput("logits", class_count=1)
    words = triton.infer("words", [texts], outputs=[top1]).as_numpy("logits")
    out["words"] = [row[0].decode() for row in words]
    bad = th.InferInput("image", [1, 3, 8, 9], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 8, 9), np.float32))
    try:
        triton.infer("tiny", [bad])
    except th.InferenceServerException as exc:
        out["bad"] = [exc.status(), exc.message()]
    out["stats"] = triton.get_inference_statistics("tiny")["model_stats"]
    out["all_stats"] = triton.get_inference_statistics()["model_stats"]
    out["v1_stats"] = triton.get_inference_statistics("tiny", "1")["model_stats"]
    for name, version in (("nope", ""), ("tiny", "7")):
        try:
            triton.get_inference_statistics(name, version)
        except th.InferenceServerException as exc:
            out[f"stats_{name}"] = exc.status()
    triton.close()
    print(json.dumps(out))
    """
)


def run_client(server: ServerThread, tmp_path: Path, batch: np.ndarray, png: bytes) -> Any:
    np.save(tmp_path / "batch.npy", batch)
    (tmp_path / "image.png").write_bytes(png)
    address = base_url(server).removeprefix("http://")
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
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_tritonclient_http_metadata_infer_and_statistics(
    server: ServerThread, tmp_path: Path
) -> None:
    batch, png = random_batch(3), png_bytes(7)
    out = run_client(server, tmp_path, batch, png)
    assert out["live"] and out["ready"] and out["model_ready"] == [True, True]
    assert not out["missing_ready"]
    assert "statistics" in out["server"]["extensions"]
    assert out["model"]["versions"] == ["1"]
    assert out["model"]["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 3, 8, 8]},
        {"name": "image_bytes", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert out["words_model"]["inputs"][1] == {
        "name": "text",
        "datatype": "BYTES",
        "shape": [-1, 1],
    }
    assert out["config"]["max_batch_size"] == 8
    assert out["config"]["input"][0]["dims"] == [3, 8, 8]  # numbers, as Triton writes them

    expected = reference(batch, seed=1)
    for binary in (True, False):
        np.testing.assert_allclose(out[f"logits_{binary}"], expected, rtol=1e-5, atol=1e-5)
    assert out["response"] == {"model_name": "tiny", "model_version": "1", "id": "r1"}
    labels = image_config().labels
    for row, strings in zip(softmax(expected), out["top2"], strict=True):
        order = np.argsort(-row)[:2]
        assert [s.split(":", 1)[1] for s in strings] == [f"{i}:{labels[i]}" for i in order]
    image = image_bytes_to_array(png, image_config().image)[None]
    np.testing.assert_allclose(out["image_logits"], reference(image, seed=1), rtol=1e-5, atol=1e-5)
    assert [s.split(":")[2] in ("negative", "positive") for s in out["words"]] == [True, True]
    assert out["bad"][0] == "400" and "does not match" in out["bad"][1]

    # Four good requests of tiny (3 + 3 + 3 + 1 rows), one failed.
    (stats,) = out["stats"]
    assert (stats["name"], stats["version"]) == ("tiny", "1")
    assert stats["inference_count"] == 10  # rows through the model
    assert 1 <= stats["execution_count"] <= 4  # batches: one per sequential request at most
    assert stats["last_inference"] > 0
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 4
    assert inference["fail"]["count"] == 1
    for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[stage]["count"] == 4, stage
        assert inference[stage]["ns"] > 0, stage
    parts = sum(inference[s]["ns"] for s in ("queue", "compute_input", "compute_infer"))
    assert parts <= inference["success"]["ns"]  # the stages are parts of the whole
    assert [b["batch_size"] for b in stats["batch_stats"]] == [1, 3]
    assert sorted(s["name"] for s in out["all_stats"]) == ["tiny", "words"]
    assert out["v1_stats"][0]["version"] == "1"
    assert out["stats_nope"] == "404" and out["stats_tiny"] == "404"


def test_health_answers_probes_with_the_status(server: ServerThread) -> None:
    url = base_url(server)
    assert http(url + "/v2/health/live")[0] == 200
    status, _, body = http(url + "/v2/health/ready")
    assert (status, json.loads(body)) == (200, {"ready": True})
    assert http(url + "/v2/models/tiny/ready")[0] == 200
    assert http(url + "/v2/models/tiny/versions/1/ready")[0] == 200
    assert http(url + "/v2/models/tiny/versions/2/ready")[0] == 503
    assert server.running is not None
    server.running.dataplane.serving = False  # as on shutdown: probes see it before the port closes
    status, _, body = http(url + "/v2/health/ready")
    assert (status, json.loads(body)) == (503, {"ready": False})
    assert http(url + "/v2/models/tiny/ready")[0] == 503
    assert http(url + "/v2/health/live")[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope", None, 404, "model 'nope' not found"),
        ("/v2/models/tiny/versions/x", None, 400, "positive integer"),
        (
            "/v2/models/nope/infer",
            b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[0]}]}',
            404,
            "model 'nope' not found",
        ),
        ("/v2/models/tiny/infer", b"{not json", 400, "not valid JSON"),
        ("/v2/models/tiny/infer", b"[1]", 400, "JSON object"),
        ("/v2/models/tiny/infer", b'{"inputs": 3}', 400, "inputs must be a JSON list"),
        (
            "/v2/models/tiny/infer",
            b'{"inputs":[{"name":"image","datatype":"FP32","shape":[1,3,8,9],"data":[0]}]}',
            400,
            "has 1 values for shape [1, 3, 8, 9]",
        ),
        (
            "/v2/models/tiny/infer",
            b'{"inputs":[{"name":"image","datatype":"FP32","shape":[1,3,8],"data":'
            + json.dumps([0.0] * 24).encode()
            + b"}]}",
            400,
            "does not match",
        ),
        (
            "/v2/models/tiny/infer",
            b'{"inputs":[{"name":"image","datatype":"FP32","shape":[1],"data":["a"]}]}',
            400,
            "data is not FP32",
        ),
        ("/v2/nowhere", None, 404, "Not Found"),
        ("/v2/health/live", b"{}", 405, "Method Not Allowed"),
    ],
)
def test_errors_answer_json_with_their_status(
    server: ServerThread, path: str, body: bytes | None, status: int, message: str
) -> None:
    answer_status, headers, answer = http(base_url(server) + path, body)
    assert answer_status == status
    assert headers["Content-Type"].startswith("application/json")
    assert message in json.loads(answer)["error"]


def test_binary_data_extension_in_and_out(server: ServerThread) -> None:
    """Two inputs' worth of bytes after the JSON, the outputs' bytes after the answer's JSON."""
    batch = random_batch(2)
    png = png_bytes(3)
    header = {
        "inputs": [
            {
                "name": "image_bytes",
                "datatype": "BYTES",
                "shape": [1, 1],
                "parameters": {"binary_data_size": len(join_bytes([png]))},
            }
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    text = json.dumps(header).encode()
    length = {"Inference-Header-Content-Length": str(len(text))}
    url = base_url(server) + "/v2/models/tiny/infer"
    status, headers, body = http(url, text + join_bytes([png]), length)
    assert status == 200
    answer_length = int(headers["Inference-Header-Content-Length"])
    answer = json.loads(body[:answer_length])
    (output,) = answer["outputs"]
    assert output["shape"] == [1, 3] and output["parameters"]["binary_data_size"] == 12
    image = image_bytes_to_array(png, image_config().image)[None]
    logits = np.frombuffer(body[answer_length:], dtype="<f4").reshape(1, 3)
    np.testing.assert_allclose(logits, reference(image, seed=1), rtol=1e-5, atol=1e-5)

    # Nested JSON data, classification asked for in JSON: BYTES strings come back as JSON.
    header = {
        "inputs": [
            {"name": "image", "datatype": "FP32", "shape": [2, 3, 8, 8], "data": batch.tolist()}
        ],
        "outputs": [{"name": "logits", "parameters": {"classification": 1}}],
    }
    status, headers, body = http(url, json.dumps(header).encode())
    assert status == 200 and "Inference-Header-Content-Length" not in headers
    top = json.loads(body)["outputs"][0]
    assert top["datatype"] == "BYTES" and top["shape"] == [2, 1]
    best = np.argmax(reference(batch, seed=1), axis=1)
    assert [int(s.split(":")[1]) for s in top["data"]] == best.tolist()

    # Binary data the inputs do not account for, or a header length past the body.
    status, _, body = http(url, text + join_bytes([png]) + b"xx", length)
    assert status == 400 and "no input claims" in json.loads(body)["error"]
    status, _, body = http(url, text, {"Inference-Header-Content-Length": "99999"})
    assert status == 400 and "outside the body" in json.loads(body)["error"]


def test_repository_index_over_rest(server: ServerThread) -> None:
    status, _, body = http(base_url(server) + "/v2/repository/index", b'{"ready": true}')
    assert status == 200
    assert sorted((e["name"], e["state"]) for e in json.loads(body)) == [
        ("tiny", "READY"),
        ("words", "READY"),
    ]
    status, _, body = http(base_url(server) + "/v2/repository/models/tiny/unload", b"")
    assert status == 409 and "--model-control explicit" in json.loads(body)["error"]


def test_no_http_unless_asked(tmp_path: Path, start_server: Start) -> None:
    write_image_model(tmp_path, "tiny", 1)
    server = start_server(tmp_path, metrics=False)
    assert server.running is not None
    assert server.running.http_port is None and server.running.rest is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_rest_uses_the_servers_tls(tmp_path: Path, start_server: Start) -> None:
    write_image_model(tmp_path / "models", "tiny", 1)
    cert, key = self_signed(tmp_path, "localhost")
    server = start_server(
        tmp_path / "models", http_port=0, metrics=False, tls=TlsConfig(cert=cert, key=key)
    )
    assert server.running is not None
    url = f"https://localhost:{server.running.http_port}/v2/health/ready"
    trusted = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(url, context=trusted, timeout=30) as response:
        assert response.status == 200
    with pytest.raises(OSError):  # plaintext against the TLS port: refused or hung up
        urllib.request.urlopen(url.replace("https", "http"), timeout=30)


def test_onyx_serve_opens_the_rest_port_from_its_environment_variable(tmp_path: Path) -> None:
    write_image_model(tmp_path / "models", "tiny", 1)
    command = [sys.executable, "-m", "onyx", "serve", "-r", str(tmp_path / "models")]
    command += ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "ONYX_HTTP_PORT": "0"}
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"KServe v2 REST on 127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else port
            if "serving " in line:
                break
        assert port is not None, "no REST port reported"
        status, _, body = http(f"http://127.0.0.1:{port}/v2/models/tiny/ready")
        assert (status, json.loads(body)) == (200, {"ready": True})
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_a_taken_rest_port_fails_the_start(tmp_path: Path) -> None:
    write_image_model(tmp_path, "tiny", 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ServerConfig(
            repository=tmp_path, host="127.0.0.1", port=0, http_port=port, metrics=False
        )
        with pytest.raises(OSError, match=str(port)):
            asyncio.run(create_server(config))


def test_rest_inference_goes_through_the_servers_admission(server: ServerThread) -> None:
    """One in-flight bound for both ports: at the bound, REST is refused 429 and counted like
    gRPC; once a place is free it answers again."""
    assert server.running is not None
    admission = server.running.admission
    bound = admission.policy.max_inflight
    assert bound > 0
    png = png_bytes(3)
    header = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1, 1],
                          "parameters": {"binary_data_size": len(join_bytes([png]))}}]}  # fmt: skip
    text = json.dumps(header).encode()
    length = {"Inference-Header-Content-Length": str(len(text))}
    url = base_url(server) + "/v2/models/tiny/infer"
    admission.inflight = bound  # as if `bound` gRPC calls were running (event-loop int: no race)
    try:
        status, _, answer = http(url, text + join_bytes([png]), length)
    finally:
        admission.inflight = 0
    assert status == 429, answer
    assert "--max-inflight-requests" in json.loads(answer)["error"]
    assert http(url, text + join_bytes([png]), length)[0] == 200
