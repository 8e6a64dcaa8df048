"""Execution: ONNX Runtime sessions (`runtime`), IO binding (`binding`), and how a model version's
batches run: sized at load into one `plan.ExecutionPlan` (`sizing`), run by a pool
(`session_pool`, with `thread_choice` and `lone`). Knows nothing of protocols or batching
policy; a new execution mode is a new kind of plan here.
"""
