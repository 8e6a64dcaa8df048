"""The training sidecar (torch): data, models, one training engine, evaluation, export, publish.

Installed from `./train` (the `onyx-train` distribution); its click commands plug into the `onyx`
command through the `onyx.commands` entry point. Preprocessing comes from `onyx.serve` so
training and serving transform inputs identically; nothing in `onyx.serve` imports from here.
"""
