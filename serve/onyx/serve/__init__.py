"""The inference side: model repository, ONNX Runtime sessions, batching, gRPC and metrics.

Never imports torch: the serving install (`pip install ./serve`) and image stay small, and the
`onyx-serve` distribution does not even declare it. The training sidecar (`./train`) imports the
preprocessing from here so both sides transform inputs identically; nothing here imports it.
"""

from __future__ import annotations

__version__ = "0.2.0"
