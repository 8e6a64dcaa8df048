"""`onyx bench`: load generation against a server, the raw ONNX Runtime baseline, the report.

Serving-side only (no torch): it runs wherever the server's install does.
"""
