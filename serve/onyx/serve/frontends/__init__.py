"""Front ends: one thin adapter per protocol over the data plane (`onyx.serve.dataplane`).

onyx.v1 (`onyx_v1`, over `onyx.serve.pipeline`), KServe v2 over gRPC (`kserve`,
`kserve_tensors`: protobuf <-> the data plane's values) and REST (`rest`, `rest_tensors`: JSON
and binary tensors <-> the same values), health and reflection; the gRPC plumbing they share
(`rpc`: errors as status codes, `streams`, `parse_errors`, `interceptor`, `wrapping`) and the one
front door every call passes before any work (`admission`). A new protocol is a new module here.
"""
