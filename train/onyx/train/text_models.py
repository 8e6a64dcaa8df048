"""Old import path kept for bench/ only; new code imports `onyx.train.text.models`."""

from __future__ import annotations

from onyx.train.text.models import TextClassifier, TextModelConfig

__all__ = ["TextClassifier", "TextModelConfig"]
