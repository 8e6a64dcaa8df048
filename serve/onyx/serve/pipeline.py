"""One inference, whatever the front end: resolve the version, decode, batch, run.

`onyx.v1` (Classify, ClassifyStream) and KServe's ModelInfer (over gRPC and REST, through
`dataplane.DataPlane`) all come through here, so version choice, draining on reload and the
thread hops are decided in one place:

* the version is chosen and leased first, so a version being unloaded finishes this request;
* `decode` turns the request into the model's input array: on the preprocessing pool when it
  decodes images or text (blocking work stays off the event loop), inline when it only wraps raw
  tensor bytes (a thread hop would cost more than the work);
* the array goes through the version's dynamic batcher, which runs ONNX Runtime in its threads
  and gives back the model's outputs by name: the configured output (`config.output`, the
  logits) is picked out, the others stay by name for whoever reads them (explanations);
* with `answer`, the caller's `respond` turns the outputs into its response, timed as the
  request's compute_output; every stage lands in the version's `Statistics` (Triton's), and the
  request is timed by `observers.track` (metrics; a no-op without them).

    result = await pipeline.run("pets", 0, decode, deadline=None, offload=True)
    scores = activate(result.logits, result.config.output_activation)
    response = await pipeline.answer("pets", 0, decode, None, True, respond=to_response)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from onyx.contract.text import TextEncoder
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.batching import Stages
from onyx.serve.execution.interface import Outputs
from onyx.serve.observers import NO_OBSERVERS, Observers
from onyx.serve.repository import Repository
from onyx.serve.statistics import StageTimes, Statistics

Response = TypeVar("Response")

# Request -> the model's input array, given the own config and (text models) tokenizer of the
# version that will run it (versions of one model may differ in both).
Decode = Callable[[pb.ModelConfig, TextEncoder | None], np.ndarray]


@dataclass(frozen=True)
class Inferred:
    model: str
    version: int
    config: pb.ModelConfig
    # Every output the config declares, by name, one row per input in request order; an
    # explaining version's feature map is `outputs[config.explain.feature_map.name]`,
    # (n, K, h, w).
    outputs: Outputs
    # The version's folder: its side files (an explaining version's head weights).
    folder: Path

    @property
    def logits(self) -> np.ndarray:
        """The configured output (`config.output.name`), raw: (n, classes)."""
        return self.outputs[self.config.output.name]


class Pipeline:
    def __init__(
        self,
        repository: Repository,
        preprocess: Executor,
        observers: Observers = NO_OBSERVERS,
        statistics: Statistics | None = None,
    ) -> None:
        self.repository = repository
        self._preprocess = preprocess
        # Times every request (metrics); a no-op without metrics.
        self._track = observers.track
        # Always kept (a few integers per version): ModelStatistics answers from here.
        self.statistics = statistics if statistics is not None else Statistics()
        # Told about every explained request and its extra seconds (`onyx.serve.explain.classify`).
        self.explained = observers.explained

    async def run(
        self,
        model_name: str,
        version_number: int,
        decode: Decode,
        deadline: float | None,
        offload: bool,
    ) -> Inferred:
        return await self.answer(model_name, version_number, decode, deadline, offload, _same)

    async def answer(
        self,
        model_name: str,
        version_number: int,
        decode: Decode,
        deadline: float | None,
        offload: bool,
        respond: Callable[[Inferred], Response],
    ) -> Response:
        """`run`, then `respond(result)` inside the request's timing and statistics."""
        model = self.repository.get(model_name)
        version = model.version(version_number)
        # The version's own config: its labels, tensors, preprocessing and tokenizer.
        config = version.config
        assert config is not None  # a ready version has one
        statistics = self.statistics.version(model.name, version.version)
        started = time.perf_counter()
        try:
            with version.lease(), self._track(model.name, version.version) as tracker:
                if offload:
                    loop = asyncio.get_running_loop()
                    batch = await loop.run_in_executor(
                        self._preprocess, decode, config, version.text_encoder
                    )
                else:
                    batch = decode(config, version.text_encoder)
                decoded = time.perf_counter()
                tracker.preprocessed(decoded - started)
                tracker.inputs = len(batch)
                stages = Stages()
                outputs = await version.infer(batch, deadline, stages)
                inferred = time.perf_counter()
                folder = version.path.parent
                response = respond(Inferred(model.name, version.version, config, outputs, folder))
        except BaseException:
            statistics.failed(time.perf_counter() - started)
            raise
        finished = time.perf_counter()
        times = StageTimes(
            total_s=finished - started,
            input_s=decoded - started,
            queue_s=stages.queue_s,
            infer_s=stages.infer_s,
            output_s=finished - inferred,
        )
        statistics.succeeded(times)
        return response


def _same(result: Inferred) -> Inferred:
    return result
