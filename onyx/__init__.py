"""Onyx: fine-tune image and text classifiers, export them to ONNX, serve them over gRPC.

`onyx.serve` is the inference side (ONNX Runtime, no torch); `onyx.train` is the torch side and
imports the serve-side preprocessing so both sides transform inputs identically.
"""

from __future__ import annotations

__version__ = "0.1.0"
