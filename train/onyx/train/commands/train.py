"""`onyx train image` and `onyx train text`: options generated from `ImageTrainConfig` and
`TextTrainConfig` (one per field, the dataclass's defaults and help), a --config TOML file, then
the library's `fit`. The resolved config is what the engine saves as config.json in --out-dir.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from onyx.settings.options import OTHER_GROUP, ConfigCommand, ConfigOption, config_options
from onyx.settings.options import precedence_epilog as _precedence
from onyx.train.config import AugmentConfig, ImageTrainConfig, TextTrainConfig, TrainConfig

_OUT = {"out_dir": {"aliases": ("-o", "--out")}}
_LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning"]),
    default="info",
    show_default=True,
    cls=ConfigOption,
    group=OTHER_GROUP,
)

_LR_FIND = click.option(
    "--lr-find",
    is_flag=True,
    cls=ConfigOption,
    group=OTHER_GROUP,
    help="Run the learning-rate range test instead of training: an exponential sweep, the "
    "smoothed loss plotted to --out-dir/lr_find.png, a suggested --lr printed and saved "
    "(lr_find.json). The model is not changed.",
)


@click.group("train")
def train_group() -> None:
    """Train a classifier: checkpoints and the resolved config (config.json) land in --out-dir.

    \b
    Each option of `onyx train image` / `onyx train text` is a field of the training config;
    a --config TOML file with those field names sets many at once.
    """


IMAGE_EPILOG = f"""\b
Examples:
  onyx train image data/pets --model resnet18 --weights imagenet --epochs 5 --patience 2
  onyx train image data/digits --model small_cnn --weights none --color-mode grayscale \\
      --image-size 32 --no-hflip --rotation-degrees 0
  onyx train image data/pets --config pets.toml --epochs 20   # the file, one value overridden
  onyx train image data/pets --resume runs/image/last.pt --epochs 10
  onyx train image data/pets --model resnet18 --weights imagenet --lr-find   # pick --lr
  torchrun --nproc-per-node 2 -m onyx train image data/pets --device cpu

{_precedence()}
"""


@train_group.command("image", cls=ConfigCommand, epilog=IMAGE_EPILOG)
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@config_options(ImageTrainConfig, arguments=["data"], extra=_OUT, group="Training")
@click.option(
    "--no-augment",
    is_flag=True,
    cls=ConfigOption,
    group=OTHER_GROUP,
    help="All augmentation off, whatever the augment options say.",
)
@_LR_FIND
@_LOG_LEVEL
def train_image_command(
    config: ImageTrainConfig, no_augment: bool, lr_find: bool, log_level: str
) -> None:
    """Fine-tune an image classifier on DATA (one sub-folder of images per class, or
    train/ val/ [test/] each with class folders)."""
    from onyx.settings.logs import configure_logging

    configure_logging(log_level)
    check_image_config(config)
    if no_augment:
        config = dataclasses.replace(config, augment=AugmentConfig.off())
    if lr_find:
        find_and_report(config)
        return
    fit_and_report(config)


def find_and_report(config: TrainConfig) -> None:
    """--lr-find: the range test instead of training; the model and data are left as they are."""
    from onyx.train.engine.lr_find import lr_find
    from onyx.train.tasks.registry import task_for

    try:
        result = lr_find(task_for(config))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"suggested lr {result.suggested_lr:.2g} (steepest descent of the smoothed loss "
               f"over {len(result.lrs)} steps); curve: {result.plot or result.record}")  # fmt: skip


def fit_and_report(config: TrainConfig) -> None:
    """Run the one engine; bad data is a clean error, Ctrl-C exits 130 with the resume hint."""
    from onyx.train.engine.loop import fit
    from onyx.train.tasks.registry import task_for

    try:
        result = fit(task_for(config))
    except (ValueError, FileNotFoundError) as exc:  # DataError, SplitError are ValueErrors
        raise click.ClickException(str(exc)) from exc
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks
    if result.interrupted:
        if main_rank:
            click.echo(f"interrupted; resume with --resume {result.last_checkpoint}", err=True)
        sys.exit(130)
    if main_rank:
        click.echo(
            f"best val accuracy {result.best_accuracy:.4f}; checkpoint {result.best_checkpoint}"
        )


def check_image_config(config: ImageTrainConfig) -> None:
    """The checks a click type cannot make: the registry's models, a weights file."""
    from onyx.train.tasks.image.models import list_models

    if config.model not in list_models():
        raise click.BadParameter(f"choose one of: {', '.join(list_models())}", param_hint="--model")
    if config.weights not in ("imagenet", "none") and not Path(config.weights).is_file():
        raise click.BadParameter(
            f"{config.weights!r}: choose imagenet, none, or an existing state-dict file",
            param_hint="--weights",
        )


TEXT_EPILOG = f"""\b
Examples:
  onyx train text reviews.jsonl --cell gru --bidirectional --out runs/sentiment
  onyx train text aclImdb/ --val-data aclImdb/test --max-length 400 --epochs 5
  onyx train text reviews.csv --labels neg,pos --config sentiment.toml

{_precedence()}
"""


@train_group.command("text", cls=ConfigCommand, epilog=TEXT_EPILOG)
@click.argument("data", type=click.Path(exists=True))
@config_options(TextTrainConfig, arguments=["data"], extra=_OUT, group="Training")
@_LR_FIND
@_LOG_LEVEL
def train_text_command(config: TextTrainConfig, lr_find: bool, log_level: str) -> None:
    """Train a sentiment (text) classifier on DATA: a .csv/.tsv/.jsonl file or an IMDb folder."""
    from onyx.settings.logs import configure_logging

    configure_logging(log_level)
    if lr_find:
        find_and_report(config)
        return
    fit_and_report(config)
