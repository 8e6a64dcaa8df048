"""The step both halves of the demo end on: a run's best checkpoint exported and published.

exported = publish_best(fitted, "photos", Path("models"), work / "export")
"""

from __future__ import annotations

from pathlib import Path

from onyx.train.engine.loop import FitResult
from onyx.train.export import ExportConfig, ExportResult, export_checkpoint


def publish_best(fitted: FitResult, name: str, repository: Path, work_dir: Path) -> ExportResult:
    """Export `fitted`'s best checkpoint with the parity check and publish it as `name` (a new
    version); `work_dir` holds the exported files until then."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = ExportConfig(checkpoint=fitted.best_checkpoint, name=name, repository=repository)
    return export_checkpoint(config, work_dir)
