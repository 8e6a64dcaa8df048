"""perf_analyzer, unchanged, against Onyx over gRPC and HTTP: generated tensors, and image bytes
and text from `--input-data` (through the BYTES input metadata declares), with the server-side
section that Triton's statistics extension feeds.

Input-data files as an operator writes them: BYTES elements in JSON are strings (text), or
`{"b64": ...}` holding the tensor's serialized form (a 4-byte little-endian length, then the
bytes) for binary data such as encoded images.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.perf_analyzer import binary_environment, find_binary
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.serve.protocol import join_bytes
from tests.serve.tiny_models import png_bytes, write_image_model, write_text_model
from tests.tools import missing_tool


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("models")
    write_image_model(root, "tiny", 1)
    write_text_model(root)
    config = ServerConfig(repository=root, host="127.0.0.1", port=0, http_port=0, metrics=False)
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def input_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    images = [
        {"image_bytes": {"b64": base64.b64encode(join_bytes([png_bytes(seed)])).decode()}}
        for seed in range(3)
    ]
    texts = [{"text": ["good"]}, {"text": ["not bad at all"]}]
    files = {"tiny": folder / "images.json", "words": folder / "texts.json"}
    files["tiny"].write_text(json.dumps({"data": images}))
    files["words"].write_text(json.dumps({"data": texts}))
    return files


def perf_analyzer(server: ServerThread, protocol: str, model: str, *extra: str) -> str:
    binary = find_binary()
    try:
        env = binary_environment(binary)
    except SystemExit as exc:  # libb64 / libcudart missing: an optional tool on this machine
        missing_tool(str(exc))
    assert server.running is not None
    port = server.running.http_port if protocol == "http" else server.port
    command = [
        str(binary), "-m", model, "-i", protocol, "-u", f"127.0.0.1:{port}",
        "--measurement-interval", "500", "--max-trials", "3", "--stability-percentage", "999",
        *extra,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def assert_served_with_server_side_section(report: str) -> None:
    assert "Server:" in report, report
    counted = [line for line in report.splitlines() if "Successful request count" in line]
    assert counted and int(counted[-1].split(":")[1]) > 0, report
    breakdown = next(line for line in report.splitlines() if "Avg request latency" in line)
    for stage in ("queue", "compute input", "compute infer", "compute output"):
        assert stage in breakdown, breakdown


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_drives_image_bytes_and_text(
    server: ServerThread, input_files: dict[str, Path], protocol: str
) -> None:
    for model in ("tiny", "words"):
        report = perf_analyzer(server, protocol, model, "--input-data", str(input_files[model]))
        assert_served_with_server_side_section(report)


@pytest.mark.slow
def test_perf_analyzer_over_http_with_generated_tensors(server: ServerThread) -> None:
    # Random data fills both declared inputs; the server answers from the tensor.
    assert_served_with_server_side_section(perf_analyzer(server, "http", "tiny"))
