"""The training sidecar (torch): data, models, one training engine, evaluation, export, publish.

Installed from `./train` (the `onyx-train` distribution); its click commands plug into the `onyx`
command through the `onyx.commands` entry point. Preprocessing comes from `onyx.contract` so
training and serving transform inputs identically; nothing in the serving distribution imports
from here.

Rooms: `engine` (the loop, generic over the `Task` protocol), `tasks` (image, text, and the
`registry` that turns a config into a task), `data` (splits, dedup, bundled data sets), `export`,
`evaluate`, `tune`, `demo` (the only room that runs a server) and `commands` (the click layer).
"""
