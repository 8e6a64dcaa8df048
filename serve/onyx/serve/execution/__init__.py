"""Execution: ONNX Runtime sessions (`runtime`), IO binding (`binding`), and how a model version's
batches run (`session_pool`, `thread_choice`, `lone`). Knows nothing of protocols or batching
policy; a new execution mode is a new module here.
"""
