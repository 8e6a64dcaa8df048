"""Flag resolution of `onyx serve` (the server itself is tested over real channels elsewhere)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from onyx.serve.cli import resolve_model_control, resolve_tls


def test_poll_interval_implies_poll_and_conflicts_with_explicit() -> None:
    assert resolve_model_control(None, None) == "none"
    assert resolve_model_control(None, 2.0) == "poll"
    assert resolve_model_control("explicit", None) == "explicit"
    with pytest.raises(click.BadParameter, match="--model-control poll"):
        resolve_model_control("explicit", 2.0)


def test_tls_flags_go_together(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    assert resolve_tls(None, None, None) is None
    assert resolve_tls(cert, key, None) is not None
    with pytest.raises(click.UsageError, match="go together"):
        resolve_tls(cert, None, None)
    with pytest.raises(click.UsageError, match="needs --tls-cert"):
        resolve_tls(None, None, cert)
