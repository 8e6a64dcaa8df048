"""Classify with explanations: what the model looked at, next to the prediction, torch-free.

    request.explain.SetInParent()                      # top-1 class of each input
    request.explain.labels[:] = ["husky", "wolf"]      # or these classes
    response = await classify_explained(pipeline, request, deadline, limits, k=5)

Image models exported with `ExplainSupport` return their last feature map beside the logits from
the same forward pass, as the output the config names (`config.explain.feature_map`, exported as
`gradcam.FEATURE_MAP_NAME`); each explained class gets a Grad-CAM heatmap (`onyx.contract.gradcam`)
placed on the original image. Text models get per-token occlusion scores (`explain.text`): each
input and its leave-one-token-out variants run as one batch. Any other model answers
FAILED_PRECONDITION.
KServe's `saliency` output (`saliency`) is the top-1 map over the model input, (n, rows, cols).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from onyx.contract import gradcam as cam
from onyx.contract.errors import ExplainUnavailable, InvalidInput
from onyx.contract.scores import activate, top_k
from onyx.contract.text import TextEncoder, pad_batch
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.config import InputLimits
from onyx.serve.explain.text import occlusion_rows, occlusion_scores, token_spans
from onyx.serve.inputs import decode_inputs, text_to_ids
from onyx.serve.observers import Explained
from onyx.serve.pipeline import Inferred, Pipeline

SALIENCY = "saliency"
# An unknown label's error lists this many of the model's (1000 would not fit in a status).
LABELS_SHOWN = 20


@dataclass
class _Decoded:
    """What decoding learnt that explaining needs: image sizes, or each text's tokens."""

    # Per image input: (width, height) as sent, after EXIF orientation; None for raw tensors.
    sizes: list[tuple[int, int] | None] = field(default_factory=list)
    # Per text input: its token ids and spans.
    texts: list[tuple[np.ndarray, list[tuple[str, int, int]]]] = field(default_factory=list)


def check_explainable(config: pb.ModelConfig) -> None:
    if config.task == pb.TASK_TEXT or config.HasField("explain"):
        return
    raise ExplainUnavailable(
        f"model {config.name!r} cannot explain its predictions: its graph has no feature-map "
        "output and head weights (export it with `onyx export` from a registry architecture)"
    )


def class_indices(config: pb.ModelConfig, labels: Sequence[str]) -> list[int]:
    """The indices of the named classes; an unknown name is INVALID_ARGUMENT naming the choices."""
    known = {label: i for i, label in enumerate(config.labels)}
    missing = [label for label in labels if label not in known]
    if missing:
        shown = ", ".join(config.labels[:LABELS_SHOWN])
        more = f" and {len(config.labels) - LABELS_SHOWN} more" if len(known) > LABELS_SHOWN else ""
        raise InvalidInput(
            f"explain: model {config.name!r} has no class {missing[0]!r}; "
            f"its labels are {shown}{more}"
        )
    return [known[label] for label in labels]


def _decoder(
    inputs: Sequence[api.Input], options: api.ExplainOptions, limits: InputLimits, seen: _Decoded
) -> Callable[[pb.ModelConfig, TextEncoder | None], np.ndarray]:
    def decode(config: pb.ModelConfig, encoder: TextEncoder | None) -> np.ndarray:
        check_explainable(config)
        if options.labels:
            class_indices(config, options.labels)  # refuse unknown labels before inference
        if config.task == pb.TASK_TEXT:
            return _decode_text(inputs, config, limits, encoder, seen)
        batch = decode_inputs(inputs, config, limits, encoder)
        seen.sizes = [_image_size(item) for item in inputs]
        return batch

    return decode


def _image_size(item: api.Input) -> tuple[int, int] | None:
    if item.WhichOneof("kind") != "image":
        return None
    with Image.open(io.BytesIO(item.image)) as image:  # header only: no decode
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    # EXIF orientations 5-8 rotate by 90 degrees: `decode_image` transposes those.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _decode_text(
    inputs: Sequence[api.Input],
    config: pb.ModelConfig,
    limits: InputLimits,
    encoder: TextEncoder | None,
    seen: _Decoded,
) -> np.ndarray:
    blocks = []
    for index, item in enumerate(inputs):
        if item.WhichOneof("kind") != "text":
            raise InvalidInput(f"input {index}: explaining a text model needs text inputs")
        ids = text_to_ids(item.text, config, limits, encoder)
        seen.texts.append((ids, token_spans(item.text)))
        blocks.append(occlusion_rows(ids, int(config.text.pad_id)))
    pad = int(config.text.pad_id)
    width = max(b.shape[1] for b in blocks)
    return pad_batch([row for block in blocks for row in block], pad)[:, :width]


async def classify_explained(
    pipeline: Pipeline,
    request: api.ClassifyRequest,
    deadline: float | None,
    limits: InputLimits,
    k: int,
) -> api.ClassifyResponse:
    """Classify `request` and explain each input's requested classes (see the module doc); the
    pipeline's `explained` hook is told the extra time explaining took."""
    seen = _Decoded()
    decode = _decoder(request.inputs, request.explain, limits, seen)
    started = time.perf_counter()
    result = await pipeline.run(request.model, request.version, decode, deadline, offload=True)
    after_inference = time.perf_counter()
    if result.config.task == pb.TASK_TEXT:
        results = _text_results(result, seen, request.explain, k)
    else:
        results = _image_results(result, seen, request.explain, k)
    # Extra cost: explaining after inference, plus (text) the occlusion rows' share of it.
    extra = time.perf_counter() - after_inference
    if result.config.task == pb.TASK_TEXT:
        rows = len(result.logits)
        extra += (after_inference - started) * (1 - len(request.inputs) / max(rows, 1))
    pipeline.explained(result.model, result.version, extra)
    return api.ClassifyResponse(model=result.model, version=result.version, results=results)


def _explained_classes(
    config: pb.ModelConfig, options: api.ExplainOptions, scores: np.ndarray
) -> list[int]:
    if options.labels:
        return class_indices(config, options.labels)
    return [int(np.argmax(scores))]


def _classification(row: np.ndarray, k: int, labels: Sequence[str]) -> api.Classification:
    return api.Classification(
        classes=[
            api.ClassScore(label=r.label, index=r.index, score=r.score)
            for r in top_k(row, k, labels)
        ]
    )


def feature_maps(result: Inferred) -> np.ndarray:
    """An explaining version's last feature maps, (n, K, h, w): its output of the name its
    config gives (`check_explainable` ran before inference; `Session` checked the graph has it)."""
    return result.outputs[result.config.explain.feature_map.name]


def _image_results(
    result: Inferred, seen: _Decoded, options: api.ExplainOptions, k: int
) -> list[api.Classification]:
    config = result.config
    features = feature_maps(result)
    head = cam.head_of(result.folder / config.explain.head_file)
    scores = activate(result.logits, config.output_activation)
    rows, cols = cam.grid_size(config.image.crop_height, config.image.crop_width)
    answers = []
    for i, row in enumerate(scores):
        classes = _explained_classes(config, options, row)
        maps = cam.grad_cam(features[i], head, np.asarray(classes))
        grids = cam.normalise(cam.resize_bilinear(maps, rows, cols))
        box, size = _placement(seen.sizes[i] if i < len(seen.sizes) else None, config.image)
        answer = _classification(row, k, config.labels)
        for c, grid in zip(classes, grids, strict=True):
            heatmap = heatmap_message(grid, box, size)
            answer.explanations.add(label=config.labels[c], index=c, heatmap=heatmap)
        answers.append(answer)
    return answers


def _placement(
    size: tuple[int, int] | None, spec: pb.ImagePreprocessing
) -> tuple[cam.Box, tuple[int, int]]:
    if size is None:  # a preprocessed tensor: the map covers the model input itself
        crop = (spec.crop_width, spec.crop_height)
        return cam.Box(0.0, 0.0, float(crop[0]), float(crop[1])), crop
    return cam.crop_box(size[0], size[1], spec), size


def heatmap_message(grid: np.ndarray, box: cam.Box, size: tuple[int, int]) -> api.Heatmap:
    return api.Heatmap(
        rows=grid.shape[0],
        cols=grid.shape[1],
        values=grid.astype(np.float32).ravel().tolist(),
        x=box.x,
        y=box.y,
        width=box.width,
        height=box.height,
        image_width=size[0],
        image_height=size[1],
    )


def _text_results(
    result: Inferred, seen: _Decoded, options: api.ExplainOptions, k: int
) -> list[api.Classification]:
    config = result.config
    scores = activate(result.logits, config.output_activation)
    answers, start = [], 0
    for ids, spans in seen.texts:
        block = scores[start : start + len(ids) + 1]
        start += len(ids) + 1
        answer = _classification(block[0], k, config.labels)
        for c in _explained_classes(config, options, block[0]):
            drops = occlusion_scores(block, c)
            explanation = answer.explanations.add(label=config.labels[c], index=c)
            for j, drop in enumerate(drops):
                token, first, last = spans[j] if j < len(spans) else ("", 0, 0)
                explanation.tokens.add(token=token, start=first, end=last, score=float(drop))
        answers.append(answer)
    return answers


def saliency(result: Inferred, observer: Explained) -> np.ndarray:
    """KServe's `saliency` output: the top-1 class map of each input over the model input (the
    crop), float32 (n, rows, cols) in [0, 1]; `observer` is told the seconds it took."""
    config = result.config
    check_explainable(config)
    if not config.HasField("explain"):
        raise ExplainUnavailable(f"model {config.name!r} has no saliency output for text")
    started = time.perf_counter()
    head = cam.head_of(result.folder / config.explain.head_file)
    rows, cols = cam.grid_size(config.image.crop_height, config.image.crop_width)
    grids = []
    for logits, features in zip(result.logits, feature_maps(result), strict=True):
        maps = cam.grad_cam(features, head, np.asarray([int(np.argmax(logits))]))
        grids.append(cam.normalise(cam.resize_bilinear(maps, rows, cols))[0])
    stacked = np.stack(grids).astype(np.float32, copy=False)
    observer(result.model, result.version, time.perf_counter() - started)
    return stacked
