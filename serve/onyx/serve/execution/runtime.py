"""ONNX Runtime sessions: choosing providers, checking a model file against its config, running.

Provider choice is deliberate rather than ORT's silent fallback: CUDA when the GPU build is
installed *and* a driver is present, else CPU, with the reason logged once per model. On CUDA a
batch runs through an IO binding (`onyx.serve.execution.binding`), on the CPU through plain `run`.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onyx.contract.dtypes import DTYPES
from onyx.contract.errors import ConfigError
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.execution.binding import Runner, bound_runner, plain_runner
from onyx.serve.execution.interface import Device as Device
from onyx.serve.execution.interface import IoBinding as IoBinding
from onyx.serve.execution.interface import Outputs

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# The CUDA provider's settings. The batcher forms batches of every size up to max_batch_size and
# text models see a new sequence length in almost every batch: cuDNN's EXHAUSTIVE search (ORT's
# default) benchmarks every convolution algorithm again for each new input shape, tens of
# milliseconds to seconds on the request that meets it; HEURISTIC picks from cuDNN's heuristics
# at once. The arena grows by what is asked, not by doubling, as several models share one GPU.
CUDA_OPTIONS = {
    "cudnn_conv_algo_search": "HEURISTIC",
    "arena_extend_strategy": "kSameAsRequested",
    "do_copy_in_default_stream": "1",
}


@dataclass(frozen=True)
class RuntimeOptions:
    device: Device = "auto"
    # 0: the cores divided by the sessions sharing them, never all cores per session
    # (several all-core pools on one machine fight each other).
    intra_op_threads: int = 0
    # The cores this process may use (0: all it is allowed); `--workers N` gives each its share.
    cores: int = 0
    # Run batches through an IO binding: auto = on CUDA only (on the CPU it only adds cost,
    # `onyx.serve.execution.binding`); on/off force it (tests run the bound path on the CPU).
    io_binding: IoBinding = "auto"


def available_cores() -> int:
    """The cores this process may run on (its affinity, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def share_of_cores(workers: int) -> int:
    """Each of `workers` processes' share of the cores, at least one."""
    return max(1, available_cores() // max(1, workers))


def cuda_unavailable_reason() -> str | None:
    """None when CUDA can be used, else why not (in words fit for a log line)."""
    if CUDA not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1) on this machine"
    return None


def choose_providers(device: Device) -> tuple[list[str], str]:
    """Providers for a session on `device`, and why they were chosen."""
    if device == "cpu":
        return [CPU], "--device cpu"
    reason = cuda_unavailable_reason()
    if reason is None:
        _preload_cuda_libraries()
        return [CUDA, CPU], "CUDA available"
    if device == "cuda":
        raise ConfigError(f"--device cuda requested but {reason}")
    return [CPU], reason


def with_options(providers: list[str]) -> list[str | tuple[str, dict[str, str]]]:
    """`providers` as ONNX Runtime takes them, CUDA with `CUDA_OPTIONS`."""
    return [(name, dict(CUDA_OPTIONS)) if name == CUDA else name for name in providers]


def _preload_cuda_libraries() -> None:
    # The pip CUDA/cuDNN wheels are not on the loader path; ORT knows where they are.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # missing wheels: the system CUDA may still serve
            log.debug("onnxruntime.preload_dlls failed: %s", exc)


def default_intra_op_threads(sessions: int, cores: int = 0) -> int:
    """`cores` (0: all this process may use) divided among the sessions sharing them."""
    return max(1, (cores or available_cores()) // max(1, sessions))


class Session:
    """One ONNX Runtime session for one model file, checked against the model's config."""

    def __init__(
        self,
        path: Path,
        config: pb.ModelConfig,
        options: RuntimeOptions = RuntimeOptions(),
        sessions_sharing_cores: int = 1,
    ) -> None:
        providers, self.provider_reason = choose_providers(options.device)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Threads ONNX Runtime computes with (the calling thread included).
        self.intra_op_threads = options.intra_op_threads or (
            default_intra_op_threads(sessions_sharing_cores, options.cores)
        )
        session_options.intra_op_num_threads = self.intra_op_threads
        session_options.inter_op_num_threads = 1
        # ORT's pool threads spin between the steps of a run (an LSTM's hundreds of small
        # parallel sections each need them at once) and, by default, for a while after it too,
        # holding a core that gRPC and Python need to answer the request; stop at the run's end.
        session_options.add_session_config_entry("session.force_spinning_stop", "1")
        session_options.log_severity_level = 3  # errors only; ORT's warnings are not ours to show
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=session_options, providers=with_options(providers)
            )
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise ConfigError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        check_signature(self._session, config, path)
        self.input_name = config.input.name
        # The outputs the config declares, by name: the logits (`config.output`) and, for a
        # version that explains itself, its feature map (`config.explain`). Others the graph may
        # have are not fetched: nobody reads them, and they need not have a batch axis.
        self.output_names = declared_outputs(config)
        self.providers: list[str] = self._session.get_providers()
        self.io_binding = uses_io_binding(options.io_binding, self.providers)
        runner = bound_runner if self.io_binding else plain_runner
        self._run: Runner = runner(self._session, self.input_name, self.output_names)

    def run(self, batch: np.ndarray) -> Outputs:
        """Run one batch; the outputs the config declares, by name. Blocking: from an executor,
        or on the event loop only where that is cheaper than a thread hand-over: a tiny model's
        batches, a small model's lone request on an idle server (`session_pool.SessionPool`)."""
        return self._run(batch)


def declared_outputs(config: pb.ModelConfig) -> list[str]:
    """The graph outputs a version is run for: its logits, then its feature map if it explains."""
    explain = [config.explain.feature_map.name] if config.HasField("explain") else []
    return [config.output.name, *explain]


def uses_io_binding(setting: IoBinding, providers: Sequence[str]) -> bool:
    """Whether a session on `providers` runs through an IO binding (auto: when CUDA runs it)."""
    return setting == "on" or (setting == "auto" and bool(providers) and providers[0] == CUDA)


def check_signature(session: ort.InferenceSession, config: pb.ModelConfig, path: Path) -> None:
    """Refuse a file whose input/output names, types or ranks differ from its config."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    problems = [
        *_signature_problems("input", config.input, inputs),
        *_signature_problems("output", config.output, outputs),
    ]
    if config.HasField("explain"):
        problems += _signature_problems("feature map", config.explain.feature_map, outputs)
    if len(inputs) != 1:
        problems.append(f"the graph has {len(inputs)} inputs, Onyx serves single-input models")
    out = outputs.get(config.output.name)
    classes = out.shape[-1] if out is not None and out.shape else None
    if isinstance(classes, int) and classes != len(config.labels):
        problems.append(f"output has {classes} classes but the config lists {len(config.labels)}")
    if problems:
        raise ConfigError(f"{path} does not match its config: " + "; ".join(problems))


def _signature_problems(
    what: str, spec: pb.TensorSpec, actual: dict[str, ort.NodeArg]
) -> list[str]:
    arg = actual.get(spec.name)
    if arg is None:
        return [f"{what} {spec.name!r} not in the graph (it has {sorted(actual)})"]
    problems = []
    expected = DTYPES[spec.dtype].onnx if spec.dtype in DTYPES else None
    if arg.type != expected:
        problems.append(f"{what} {spec.name!r} is {arg.type}, config says {expected}")
    if len(arg.shape) != len(spec.dims):
        problems.append(
            f"{what} {spec.name!r} has rank {len(arg.shape)}, config says {len(spec.dims)}"
        )
    return problems
