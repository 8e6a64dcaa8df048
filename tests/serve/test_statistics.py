"""Triton's statistics extension: where a request's time goes (batcher, pipeline), per version,
and KServe `ModelStatistics` over gRPC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.serve.background import ServerThread
from onyx.serve.batching import BatchPolicy, DynamicBatcher, Stages
from onyx.serve.execution.interface import Outputs
from onyx.serve.statistics import Duration, Statistics
from tests.serve.tiny_models import random_batch
from tests.serve.triton_json import message_json

Start = Callable[..., ServerThread]


def test_duration_counts_and_sums_nanoseconds() -> None:
    duration = Duration()
    duration.add(0.0015)
    duration.add(0.002, count=3)
    assert (duration.count, duration.ns) == (4, 3_500_000)


def test_batch_observer_counts_good_batches_by_size() -> None:
    statistics = Statistics()
    observer = statistics.batch_observer("m", 1)
    observer.batch_started(4, [0.001] * 2)
    observer.batch_finished(4, 0.01, ok=True)
    observer.batch_finished(2, 0.01, ok=True)
    observer.batch_finished(4, 0.5, ok=False)  # a failed batch ran nothing to count
    stats = statistics.version("m", 1)
    assert (stats.execution_count, stats.inference_count) == (2, 6)
    assert {size: d.count for size, d in stats.batches.items()} == {4: 1, 2: 1}
    assert statistics.version("m", 2).execution_count == 0  # each version its own


def test_submit_reports_time_queued_and_on_the_model() -> None:
    async def scenario() -> Stages:
        async def run(batch: np.ndarray) -> Outputs:
            await asyncio.sleep(0.05)
            return {"y": batch}

        # One request waits out the 30 ms queue delay (no full batch), then 50 ms on the model.
        batcher = DynamicBatcher(run, BatchPolicy(max_batch_size=8, max_queue_delay_us=30_000))
        batcher.start()
        stages = Stages()
        await batcher.submit(np.zeros((1, 2)), stages=stages)
        await batcher.close()
        return stages

    stages = asyncio.run(scenario())
    assert 0.025 <= stages.queue_s < 0.045
    assert 0.045 <= stages.infer_s < 0.5


def test_message_json_writes_64_bit_integers_as_numbers_and_every_field() -> None:
    stats = kv2.ModelStatistics(name="m", version="1", inference_count=2**40)
    as_json = message_json(stats)
    assert as_json["inference_count"] == 2**40
    assert as_json["inference_stats"]["queue"] == {"count": 0, "ns": 0}  # unset, still there
    assert as_json["batch_stats"] == []
    config = message_json(kv2.ModelInput(name="x", data_type="TYPE_FP32", dims=[3, -1]))
    assert config == {"name": "x", "data_type": "TYPE_FP32", "dims": [3, -1], "optional": False}


def test_model_statistics_over_grpc(repo: Path, start_server: Start) -> None:
    server = start_server(repo, metrics=False)
    stub = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    batch = random_batch(2)
    tensor = kv2.ModelInferRequest.InferInputTensor(
        name="image", datatype="FP32", shape=list(batch.shape)
    )
    good = kv2.ModelInferRequest(
        model_name="tiny", inputs=[tensor], raw_input_contents=[batch.tobytes()]
    )
    before = time.time() * 1000
    for _ in range(2):
        stub.ModelInfer(good)
    bad = kv2.ModelInferRequest(model_name="tiny", inputs=[tensor], raw_input_contents=[b"x"])
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(bad)

    (stats,) = stub.ModelStatistics(kv2.ModelStatisticsRequest(name="tiny")).model_stats
    assert (stats.name, stats.version) == ("tiny", "1")
    assert stats.inference_stats.success.count == 2
    assert stats.inference_stats.fail.count == 1
    assert stats.inference_stats.compute_infer.count == 2
    assert stats.inference_count == 4
    assert before <= stats.last_inference <= time.time() * 1000 + 1
    everything = stub.ModelStatistics(kv2.ModelStatisticsRequest()).model_stats
    assert [s.name for s in everything] == ["tiny"]
    for name, version in (("nope", ""), ("tiny", "2")):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelStatistics(kv2.ModelStatisticsRequest(name=name, version=version))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
