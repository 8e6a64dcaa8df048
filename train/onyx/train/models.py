"""Old import path kept for bench/ only; new code imports `onyx.train.image.models`."""

from __future__ import annotations

from onyx.train.image.models import get_model, list_models

__all__ = ["get_model", "list_models"]
