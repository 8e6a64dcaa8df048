"""The image task for the engine: class folders in, a CNN out, the transfer schedule per epoch.

    task = ImageTask(ImageTrainConfig(data=Path("data/pets"), model="efficientnet_lite0",
                                      weights="imagenet", epochs=5, patience=2))
    result = fit(task)          # onyx.train.engine.loop

The split is saved as split.json (a resumed run reuses it); the run's serving transform
(`ImagePreprocessing`) travels in every checkpoint as "preprocessing".
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from torch import nn

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import ImageTrainConfig
from onyx.train.engine.distributed import DistContext
from onyx.train.engine.task import Checkpoint, TaskData
from onyx.train.tasks.image.augment import build_augment
from onyx.train.tasks.image.data import (
    ImageFolderDataset,
    Split,
    load_split,
    load_split_file,
    save_split,
)
from onyx.train.tasks.image.models import get_model
from onyx.train.tasks.image.preprocessing import image_preprocessing
from onyx.train.tasks.image.transfer import param_groups, set_trainable

log = logging.getLogger(__name__)


def in_channels(spec: pb.ImagePreprocessing) -> int:
    """Input channels of the network: what the serving transform hands it."""
    return 1 if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else 3


class ImageTask:
    kind = "image"

    def __init__(self, config: ImageTrainConfig) -> None:
        self._config = config
        self.spec = pb.ImagePreprocessing()

    @property
    def config(self) -> ImageTrainConfig:
        return self._config

    def load_data(self, context: DistContext, resume: Checkpoint | None) -> TaskData:
        config = self.config
        split = self._split(context, resume is not None)
        self.spec = image_preprocessing(config)  # resolves image_size, mean, ... into config
        train = ImageFolderDataset(split.train, self.spec, build_augment(config.augment, self.spec))
        test = ImageFolderDataset(split.test, self.spec) if split.test else None
        summary = (
            f"{config.model} (weights {config.weights}), input {config.image_size}px, "
            f"{len(split.skipped)} unreadable files skipped"
        )
        if config.labels and tuple(config.labels) != tuple(split.labels):
            # An image model's labels are its class folders; a different list would mislabel.
            raise ValueError(
                f"--labels {','.join(config.labels)} does not match the class folders "
                f"{','.join(split.labels)}"
            )
        return TaskData(
            labels=list(split.labels),
            train=train,
            val=ImageFolderDataset(split.val, self.spec),
            train_targets=[s.label for s in split.train],
            test=test,
            summary=summary,
        )

    def _split(self, context: DistContext, resuming: bool) -> Split:
        config, out_dir = self.config, Path(self.config.out_dir)
        saved = Path(config.resume).parent / "split.json" if resuming else None
        if saved is not None and saved.is_file():
            log.info("resuming with the saved split %s", saved)
            kept = out_dir / "split.json"
            if context.is_main and not kept.exists():  # resumed into another --out-dir
                out_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(saved, kept)
            return load_split_file(saved)
        split = load_split(Path(config.data), config.val_fraction, config.seed)
        if context.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_split(split, out_dir / "split.json")
        return split

    def build_model(self, data: TaskData, resume: Checkpoint | None) -> nn.Module:
        config, channels = self.config, in_channels(self.spec)
        if resume is None:
            return get_model(config.model, len(data.labels), channels, config.weights)
        # The checkpoint has every weight: no pretrained file needed.
        saved = resume["config"]["model"]
        if saved != config.model:
            raise ValueError(
                f"--resume {config.resume} is a {saved} checkpoint, not {config.model}"
            )
        model = get_model(config.model, len(data.labels), channels)
        model.load_state_dict(resume["model"])
        return model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return param_groups(self.config, model)

    def start_epoch(self, model: nn.Module, epoch: int) -> str:
        return set_trainable(self.config, model, epoch)

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:  # noqa: ARG002
        return {"preprocessing": text_format.MessageToString(self.spec)}
