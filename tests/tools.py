"""External tools some tests drive for real (Prometheus, perf_analyzer).

Locally a missing tool skips the test with the fix; in CI (`CI` set) it fails, because CI
installs them (`scripts/system-deps`) and must run every test.
"""

from __future__ import annotations

import os

import pytest


def missing_tool(reason: str) -> None:
    """Skip (locally) or fail (in CI) a test whose external tool is missing."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI runs every test: see scripts/system-deps)")
    pytest.skip(reason)
