"""How a session runs one batch: plain `InferenceSession.run`, or through an IO binding (CUDA).

    run = bound_runner(session, "input", ["logits", "features"])   # or plain_runner(...)
    outputs = run(batch)                  # numpy in, {"logits": ..., "features": ...} out

With an IO binding, the batch is bound where it lies (host memory) and every output is bound to
host memory too, so ONNX Runtime makes one host->device copy of the input and one
device->host copy of each output per run, allocating the outputs itself; plain `run` goes through
Python's feed/fetch conversion of every input and output instead. On the CPU provider there is
nothing to copy and binding costs more than it saves (measured in-process: bench/README.md,
"Small measurements behind execution choices"). Hence `auto` binds on CUDA only.

Outputs are bound afresh before every run: bound once, ONNX Runtime would reuse the first run's
output buffers and refuse a batch of another size ("has shape {2,3} but the computed output
shape for this run is {5,3}"). Each thread has its own binding (a session may be run from
several threads at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import onnxruntime as ort

from onyx.serve.execution.interface import Outputs

# Runs one batch and returns the requested outputs by name.
Runner = Callable[[np.ndarray], Outputs]


def plain_runner(
    session: ort.InferenceSession, input_name: str, output_names: Sequence[str]
) -> Runner:
    """`session.run`: what the CPU provider wants."""
    names = list(output_names)

    def run(batch: np.ndarray) -> Outputs:
        arrays = session.run(names, {input_name: batch})
        return {name: np.asarray(out) for name, out in zip(names, arrays, strict=True)}

    return run


def bound_runner(
    session: ort.InferenceSession, input_name: str, output_names: Sequence[str]
) -> Runner:
    """`session.run_with_iobinding`: input bound from host memory, outputs to host memory."""
    names = list(output_names)
    local = threading.local()

    def run(batch: np.ndarray) -> Outputs:
        binding = getattr(local, "binding", None)
        if binding is None:
            binding = local.binding = session.io_binding()
        # The binding holds the array until the next run rebinds it: a view of the caller's
        # batch when it is already contiguous, no copy.
        binding.bind_cpu_input(input_name, np.ascontiguousarray(batch))
        for name in names:  # rebinding drops the last run's buffers (see the module's doc)
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        arrays: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return dict(zip(names, arrays, strict=True))

    return run
