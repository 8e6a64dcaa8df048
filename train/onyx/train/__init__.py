"""The training sidecar (torch): one engine (`engine/`, the loop, generic over the `Task`
protocol) and the tasks it trains (`tasks/`: image, text, and the `registry` that turns a config
into a task), data tools (`data/`: splits, dedup, bundled data sets), evaluation (`evaluate/`),
export and publishing (`export/`), tuning (`tune/`), the demo (`demo/`) and the click commands
(`commands/`).

Installed from `./train` (the `onyx-train` distribution); its click commands plug into the `onyx`
command through the `onyx.commands` entry point. Preprocessing, the tokenizer and the model
config come from `onyx.contract`, so training and serving transform inputs identically; it uses
`onyx.settings` and `onyx.client` too, and the server (`onyx.serve`) only in the demo, which
really runs one. Nothing in the serving distribution imports from here.
"""
