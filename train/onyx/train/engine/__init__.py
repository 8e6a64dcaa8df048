"""The training engine, generic over a task: the loop (`loop`), the task protocol (`task`), LR
schedule, checkpoints, distributed helpers, the LR finder, metrics and training plots."""
