"""The server. The data plane lives here at the top -- `dataplane` (what every front end calls),
`protocol` (its wire-free requests and answers), `tensors` and `metadata` (what it decodes and
describes), `pipeline` (one request's path), `repository` and `version` (what is loaded),
`batching`, `inputs`, `statistics`, `observers` and `metrics`, `config`, `server` (the wiring)
-- with the protocols in `frontends/`, ONNX Runtime in `execution/` and explanations in
`explain/`.

Never imports torch: the serving install (`pip install ./serve`) and image stay small, and the
`onyx-serve` distribution does not even declare it. Training shares `onyx.contract` with it and
imports nothing from here (except the demo, which runs a server).
"""

from __future__ import annotations

__version__ = "0.2.0"
