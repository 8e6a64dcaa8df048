"""Fixtures for serving tests: a repository of tiny ONNX models, and servers on port 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from tests.serve.tiny_models import write_image_model


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository holding model "tiny" version 1."""
    root = tmp_path / "models"
    write_image_model(root, "tiny", 1)
    return root


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    """Start servers on 127.0.0.1:0 (ServerConfig fields as keywords); all stop at teardown."""
    started: list[ServerThread] = []

    def start(repository: Path, batch_observers: Any = None, **options: Any) -> ServerThread:
        config = ServerConfig(repository=repository, host="127.0.0.1", port=0, **options)
        server = ServerThread(config, batch_observers=batch_observers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.running is not None:
            server.stop()
