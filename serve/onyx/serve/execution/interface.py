"""What the rest of the server sees of execution without importing ONNX Runtime: the outputs of
a run, by name, and the settings the configuration offers for where and how batches run.

    outputs: Outputs = session.run(batch)    # {"logits": (B, C), "feature_map": (B, K, h, w)}
"""

from __future__ import annotations

from typing import Literal

import numpy as np

# A batch's outputs by the model's own ONNX output names, each with the batch's rows first:
# they travel by name from the runtime through the batcher to a front end, never packed into
# one array for someone to unpack.
Outputs = dict[str, np.ndarray]
# Which execution provider a session uses; auto: CUDA when a GPU and driver are present.
Device = Literal["auto", "cuda", "cpu"]
# Whether batches run through an ONNX Runtime IO binding; auto: on CUDA only.
IoBinding = Literal["auto", "on", "off"]
