"""`onyx demo`: the whole path on bundled data (`workflow`), its sentiment half (`sentiment`).
The only part of training that runs a server."""
