"""What a study leaves in its folder, from the storage alone (so any worker can write it):

    best.toml       the best trial's whole config: `onyx train image DATA --config best.toml`
                    trains exactly that trial again (same seed, same metric)
    best.json       its number, metric value, parameters and checkpoint folder
    history.png     optimization history; importances.png (needs 2 complete trials);
    parallel.png    parallel coordinates (Optuna's matplotlib backend)

and `best_table(study)` the table of the best trials that the command prints.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from onyx.train.tune.objective import format_params
from onyx.train.tune.study import best_trial

log = logging.getLogger(__name__)


def best_table(study: optuna.Study, top: int = 5) -> str:
    """The `top` complete trials, best first, and how many were pruned or failed."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    complete.sort(key=lambda t: (-(t.value or 0.0), t.number))
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    lines = [f"{'trial':>5}  {'value':>7}  {'epochs':>6}  params"]
    for trial in complete[:top]:
        epochs = len(trial.intermediate_values)
        lines.append(f"{trial.number:>5}  {trial.value:>7.4f}  {epochs:>6}  "
                     f"{format_params(trial.params)}")  # fmt: skip
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    return "\n".join([f"study {study.study_name}: {summary or 'no trials'}", *lines])


def write_results(
    study: optuna.Study, study_dir: Path, metric: str, plots: bool = True
) -> list[Path]:
    """best.toml, best.json and (with `plots`) the plots in `study_dir`; what it wrote."""
    study_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    best = best_trial(study)
    if best is not None:
        written += [_write_best_config(best, study, study_dir / "best.toml", metric),
                    _write_best_json(best, study_dir / "best.json", metric)]  # fmt: skip
    if plots:
        written += write_plots(study, study_dir)
    return written


def _write_best_config(best: FrozenTrial, study: optuna.Study, path: Path, metric: str) -> Path:
    header = (
        f"# study {study.study_name}, trial {best.number}: validation {metric} {best.value:.6f}\n"
        f"# onyx train <image|text> DATA --config {path.name} --out runs/best reproduces it.\n"
    )
    path.write_text(header + dump_toml(best.user_attrs["config"]))
    return path


def _write_best_json(best: FrozenTrial, path: Path, metric: str) -> Path:
    data = {
        "trial": best.number,
        "metric": metric,
        "value": best.value,
        "params": best.params,
        "checkpoint_dir": best.user_attrs.get("out_dir"),
        "host": best.user_attrs.get("host"),
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def dump_toml(table: Mapping[str, Any]) -> str:
    """A TOML document of a config table: scalars and arrays, then one [section] per nested
    table (the only shapes a config has)."""
    plain = [f"{key} = {_toml_value(value)}" for key, value in table.items()
             if not isinstance(value, Mapping)]  # fmt: skip
    sections = [f"\n[{key}]\n" + dump_toml(value) for key, value in table.items()
                if isinstance(value, Mapping)]  # fmt: skip
    return "\n".join(plain) + "\n" + "".join(sections)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {"nan": "nan", "inf": "inf", "-inf": "-inf"}[str(value)]
        return repr(value)  # shortest text that reads back as the same float
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_plots(study: optuna.Study, study_dir: Path) -> list[Path]:
    """The PNGs that the study's trials allow: none before a complete trial, no importances
    before two (Optuna cannot rank parameters from one point)."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot, which Optuna's backend imports: no display needed
    from optuna.visualization import matplotlib as oplt

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots: dict[str, Callable[[optuna.Study], Any]] = {}
    if complete:
        plots["history.png"] = oplt.plot_optimization_history
        plots["parallel.png"] = oplt.plot_parallel_coordinate
    if len(complete) >= 2:
        plots["importances.png"] = oplt.plot_param_importances
    else:
        log.info("no importances.png: it needs 2 complete trials, the study has %d",
                 len(complete))  # fmt: skip
    return [p for name, plot in plots.items() if (p := _save_plot(plot, study, study_dir / name))]


def _save_plot(plot: Callable[[optuna.Study], Any], study: optuna.Study, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        # Optuna marks these plots experimental; tight_layout may find a legend it cannot fit.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            axes = plot(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances of parameters never varied
            log.warning("no %s: %s", path.name, exc)
            return None
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
