"""The inference side: model repository, ONNX Runtime sessions, batching, gRPC and metrics.

Never imports torch: the serving install and image stay small.
"""
