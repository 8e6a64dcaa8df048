"""One inference, whatever the front end: resolve the version, decode, batch, run.

`onyx.v1` (Classify, ClassifyStream) and KServe's ModelInfer all come through `Pipeline.run`, so
version choice, draining on reload and the thread hops are decided in one place:

* the version is chosen and leased first, so a version being unloaded finishes this request;
* `decode` turns the request into the model's input array: on the preprocessing pool when it
  decodes images or text (blocking work stays off the event loop), inline when it only wraps raw
  tensor bytes (a thread hop would cost more than the work);
* the array goes through the version's dynamic batcher, which runs ONNX Runtime in its threads.

    result = await pipeline.run("pets", 0, decode, deadline=None, offload=True)
    scores = activate(result.outputs, result.config.output_activation)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.repository import Repository

# Request -> the model's input array, given the config of the version that will run it.
Decode = Callable[[pb.ModelConfig], np.ndarray]


@dataclass(frozen=True)
class Inferred:
    model: str
    version: int
    config: pb.ModelConfig
    # Raw model outputs, (n, classes), one row per input in request order.
    outputs: np.ndarray


class Pipeline:
    def __init__(self, repository: Repository, preprocess: Executor) -> None:
        self.repository = repository
        self._preprocess = preprocess

    async def run(
        self, model_name: str, version_number: int, decode: Decode, deadline: float | None,
        offload: bool,
    ) -> Inferred:
        model = self.repository.get(model_name)
        version = model.version(version_number)
        config = model.config
        assert config is not None  # a model with a ready version has a config
        with version.lease():
            if offload:
                loop = asyncio.get_running_loop()
                batch = await loop.run_in_executor(self._preprocess, decode, config)
            else:
                batch = decode(config)
            outputs = await version.infer(batch, deadline)
        return Inferred(model.name, version.version, config, outputs)
