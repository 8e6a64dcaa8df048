"""`onyx demo`: the whole path on bundled data, the only part of training that runs a server.

`workflow` runs it (`run_demo`: the photo half, then the sentiment half, then serving and
classifying; `summary` is what the command prints), `sentiment` is its sentiment half (also used
by tests and bench/), `publishing` the export-and-publish step both halves end on. The data sets
come from `onyx.train.data` (`photos`, `reviews`); `onyx.train.commands.demo` is the command.
"""
