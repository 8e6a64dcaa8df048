"""Named outputs: how a model's results travel from the runtime through the batcher to a front
end -- by the model's own ONNX output names, never packed into one array for someone to unpack.

    outputs: Outputs = session.run(batch)      # {"logits": (B, C), "feature_map": (B, K, h, w)}
"""

from __future__ import annotations

import numpy as np

# Each array has the batch's rows first.
Outputs = dict[str, np.ndarray]
