"""`onyx tune image` and `onyx tune text`: a hyperparameter search (Optuna) over the training
options of `onyx train image|text`, which pass through unchanged and stay fixed in every trial;
a --space TOML file changes what is searched. Results land in OUT/STUDY (see
`onyx.train.tune.results`); the study itself in OUT/STUDY.db or --storage.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import click

from onyx.settings.options import (
    OTHER_GROUP,
    ConfigCommand,
    ConfigOption,
    config_options,
    given_fields,
)
from onyx.settings.options import precedence_epilog as _precedence
from onyx.train.commands.train import check_image_config
from onyx.train.config import ImageTrainConfig, TextTrainConfig, TrainConfig

_GROUP = "Search"
_TRAINING = "Training (the same in every trial, unless searched)"


def _option(*decls: str, **attrs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*decls, cls=ConfigOption, group=_GROUP, **attrs)


_SEARCH_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    _option("--study", "study_name", default="",
            help="Study name; default: TASK-DATANAME. The same name and storage continue it."),
    _option("--storage", default="", metavar="URL",
            help="Optuna RDB URL (postgresql://..., mysql://..., sqlite:///...) that workers "
                 "share; default: the SQLite file OUT/STUDY.db."),
    _option("--trials", type=click.IntRange(1), default=None,
            help="Trials of the whole study (finished or running, all workers together); "
                 "default 20 without --timeout."),
    _option("--timeout", type=click.FloatRange(0, min_open=True), default=None, metavar="SECONDS",
            help="Start no new trial after this many seconds."),
    _option("--metric", type=click.Choice(["accuracy", "macro_f1"]), default="accuracy",
            show_default=True, help="Validation metric to maximise."),
    _option("--pruner", type=click.Choice(["median", "halving", "none"]), default="median",
            show_default=True,
            help="Stop hopeless trials from the per-epoch validation metric: median rule or "
                 "successive halving."),
    _option("--space", "space_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None, help="TOML search space (ranges, log scales, choices) over the "
                               "defaults; see docs/tune.md."),
    _option("--sampler-seed", type=int, default=None,
            help="Seed of the TPE sampler (one worker only: workers with one seed draw alike)."),
    _option("--out-dir", "-o", "--out", "out_dir", type=click.Path(path_type=Path),
            default=Path("runs/tune"), show_default=True,
            help="Where OUT/STUDY/ (trials, best.toml, plots) and the default OUT/STUDY.db go "
                 "(each trial's config gets its own OUT/STUDY/trial-N)."),
    _option("--progress/--no-progress", default=True, show_default=True,
            help="A progress bar over the trials."),
    click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info",
                 show_default=True, cls=ConfigOption, group=OTHER_GROUP),
]  # fmt: skip


def search_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(_SEARCH_OPTIONS):
        fn = decorator(fn)
    return fn


@click.group("tune")
def tune_group() -> None:
    """Search the training hyperparameters for the best validation metric (Optuna).

    \b
    Every `onyx train` option passes through and stays fixed; a --space TOML file changes what
    is searched. Run the same command on several machines with one --storage URL to share
    the study; rerun it to continue an interrupted one.
    """


IMAGE_EPILOG = f"""\b
Examples:
  onyx tune image data/pets --model resnet18 --weights imagenet --epochs 4 --trials 12
  onyx tune image data/pets --space space.toml --metric macro_f1 --pruner halving
  onyx tune image data/pets --study pets --storage postgresql://user:pw@db/optuna --trials 60
  onyx train image data/pets --config runs/tune/image-pets/best.toml --out runs/best

{_precedence()}
"""


@tune_group.command("image", cls=ConfigCommand, epilog=IMAGE_EPILOG)
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@config_options(ImageTrainConfig, arguments=["data", "out_dir"], group=_TRAINING)
@search_options
def tune_image_command(config: ImageTrainConfig, **search: Any) -> None:
    """Search an image classifier's hyperparameters on DATA (class folders, or train/ val/
    [test/]; test/ is never looked at). Default space: lr, batch size, weight decay, label
    smoothing, augmentation strength; with pretrained weights also the backbone's lr scale,
    freeze epochs and unfreeze depth."""
    check_image_config(config)
    tune(config, **search)


TEXT_EPILOG = f"""\b
Examples:
  onyx tune text reviews.jsonl --epochs 5 --trials 30 --timeout 3600
  onyx train text reviews.jsonl --config runs/tune/text-reviews/best.toml

{_precedence()}
"""


@tune_group.command("text", cls=ConfigCommand, epilog=TEXT_EPILOG)
@click.argument("data", type=click.Path(exists=True))
@config_options(TextTrainConfig, arguments=["data", "out_dir"], group=_TRAINING)
@search_options
def tune_text_command(config: TextTrainConfig, **search: Any) -> None:
    """Search a text classifier's hyperparameters on DATA. Default space: lr, hidden size,
    layers, cell, bidirectional, dropout, embedding size."""
    tune(config, **search)


def tune(
    config: TrainConfig,
    *,
    study_name: str,
    storage: str,
    trials: int | None,
    timeout: float | None,
    metric: str,
    pruner: str,
    space_file: Path | None,
    sampler_seed: int | None,
    progress: bool,
    log_level: str,
) -> None:
    import optuna

    from onyx.settings.logs import configure_logging
    from onyx.train.tune.objective import Metric
    from onyx.train.tune.results import best_table, write_results
    from onyx.train.tune.study import PrunerName, StudySettings, run_study

    configure_logging(log_level)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial's line comes from us
    if config.resume:
        raise click.BadParameter("every trial trains from scratch", param_hint="--resume")
    space = _space(config, space_file)
    name = study_name or default_study_name(config)
    settings = StudySettings(
        name,
        Path(config.out_dir),
        storage,
        cast("Metric", metric),
        cast("PrunerName", pruner),
        20 if trials is None and timeout is None else trials,
        timeout,
        sampler_seed,
        progress,
    )
    click.echo(f"study {name} on {_shown(settings.storage_url)}; searching "
               + "; ".join(p.describe() for p in space.values()), err=True)  # fmt: skip
    try:
        study = run_study(config, space, settings)
    except KeyboardInterrupt:
        click.echo(f"interrupted; run the same command again to continue study {name}", err=True)
        sys.exit(130)
    except (ValueError, FileNotFoundError) as exc:  # bad data fails the first trial
        raise click.ClickException(str(exc)) from exc
    click.echo(best_table(study))
    # --no-plots skips the study's plots too (matplotlib costs seconds per worker).
    written = write_results(study, settings.study_dir, metric, plots=config.plots)
    click.echo("wrote " + ", ".join(str(p) for p in written))


def _space(config: TrainConfig, space_file: Path | None) -> Any:
    from onyx.train.tune.space import SpaceError, default_space, load_space, merge

    fixed = sorted(given_fields(click.get_current_context()))
    try:
        space = default_space(config, fixed)
        if space_file is not None:
            space = merge(space, load_space(space_file, type(config)))
    except SpaceError as exc:
        raise click.BadParameter(str(exc), param_hint="--space") from exc
    if not space:
        raise click.UsageError("nothing to search: every default is fixed; give --space")
    return space


def default_study_name(config: TrainConfig) -> str:
    kind = "image" if isinstance(config, ImageTrainConfig) else "text"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(config.data).resolve().stem)
    return f"{kind}-{stem}"


def _shown(url: str) -> str:
    """The storage URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
