"""`onyx classify --explain`: classify, then show what decided each prediction.

onyx classify --model pets --explain photo.jpg --out-dir overlays/   # PNG overlays
onyx classify --model sentiment --explain --text "not bad at all"     # coloured words
onyx classify --model sentiment --explain --text "..." --json         # spans in JSON
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from onyx.client.classifier import Client, as_json_records, format_table
from onyx.client.overlay import coloured_words, overlay
from onyx.contract.preprocess import decode_image
from onyx.proto.v1 import classifier_pb2 as api


def explain_images(
    client: Client, model: str, files: Sequence[Path], top_k: int, version: int, out_dir: Path
) -> tuple[api.ClassifyResponse, list[list[Path]]]:
    """Classify with explanations and write one overlay per explained class into `out_dir`."""
    images = [f.read_bytes() for f in files]
    inputs = [api.Input(image=data) for data in images]
    response = client.classify(model, inputs, top_k, version, explain=api.ExplainOptions())
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, data, result in zip(files, images, response.results, strict=True):
        photo = decode_image(data)
        scores = {c.index: c.score for c in result.classes}
        paths = []
        for explanation in result.explanations:
            target = out_dir / f"{path.stem}.{_safe(explanation.label)}.png"
            score = scores.get(explanation.index, float("nan"))
            overlay(photo, explanation.heatmap, explanation.label, score).save(target)
            paths.append(target)
        written.append(paths)
    return response, written


def _safe(label: str) -> str:
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "class"


def show_images(
    names: Sequence[str], response: api.ClassifyResponse, written: list[list[Path]], as_json: bool
) -> None:
    if as_json:
        records = as_json_records(names, response)
        for record, result, paths in zip(records, response.results, written, strict=True):
            record["explanations"] = [
                {"label": e.label, "index": e.index, "overlay": str(p)}
                for e, p in zip(result.explanations, paths, strict=True)
            ]
        json.dump(records, sys.stdout, indent=2)
        click.echo()
        return
    click.echo(format_table(names, response))
    click.echo("wrote " + ", ".join(str(p) for paths in written for p in paths))


def show_texts(texts: Sequence[str], response: api.ClassifyResponse, as_json: bool) -> None:
    if as_json:
        records = as_json_records(texts, response)
        for record, result in zip(records, response.results, strict=True):
            record["explanations"] = [_text_record(e) for e in result.explanations]
        json.dump(records, sys.stdout, indent=2)
        click.echo()
        return
    click.echo(format_table(texts, response))
    for text, result in zip(texts, response.results, strict=True):
        for explanation in result.explanations:
            click.echo(f"{explanation.label}: {coloured_words(text, explanation)}")


def _text_record(explanation: api.ClassExplanation) -> dict[str, object]:
    return {
        "label": explanation.label,
        "index": explanation.index,
        "tokens": [
            {"token": t.token, "start": t.start, "end": t.end, "score": round(t.score, 6)}
            for t in explanation.tokens
        ],
    }


def classify_explained(
    client: Client,
    model: str,
    files: Sequence[Path],
    texts: Sequence[str],
    top_k: int,
    version: int,
    as_json: bool,
    out_dir: Path,
) -> None:
    """The whole `--explain` path of `onyx classify` (gRPC errors propagate to the caller)."""
    if files:
        response, written = explain_images(client, model, files, top_k, version, out_dir)
        show_images([str(f) for f in files], response, written, as_json)
        return
    options = api.ExplainOptions()
    inputs = [api.Input(text=t) for t in texts]
    response = client.classify(model, inputs, top_k, version, explain=options)
    show_texts(texts, response, as_json)
