"""The torch side: data, models, training loops, evaluation and ONNX export.

Needs the `train` extra (`pip install 'onyx[train]'`). Preprocessing comes from `onyx.serve` so
training and serving transform inputs identically; nothing in `onyx.serve` imports from here.
"""
