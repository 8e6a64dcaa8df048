"""Which words decided it: per-token occlusion served for a text model whose label hinges on one
word, with character spans that point at that word in the sentence as sent."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from onyx.client.classifier import Client
from onyx.proto.v1 import classifier_pb2 as api
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.train.config import TextTrainConfig
from onyx.train.engine.loop import fit
from onyx.train.export import ExportConfig, export_checkpoint
from onyx.train.tasks.registry import task_for

FILLERS = ("the", "film", "story", "long", "today", "honestly", "was", "and", "our", "evening")
CUES = {"positive": ("great", "superb"), "negative": ("awful", "dreadful")}


def write_corpus(path: Path, count: int, seed: int = 0) -> Path:
    """Filler words, plus one cue word that alone decides the label; no cue: "neutral"."""
    rng = random.Random(seed)
    lines = []
    for index in range(count):
        label = ("positive", "negative", "neutral")[index % 3]
        words = rng.choices(FILLERS, k=rng.randrange(3, 8))
        if label in CUES:
            words.insert(rng.randrange(len(words) + 1), rng.choice(CUES[label]))
        lines.append(json.dumps({"text": " ".join(words), "label": label}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cue")
    data = write_corpus(root / "cue.jsonl", 600)
    config = TextTrainConfig(
        data=data, out_dir=root / "run", max_length=16, embed_dim=16, hidden=16, epochs=5,
        batch_size=32, lr=1e-2, device="cpu", pooling="max",
    )  # fmt: skip
    fitted = fit(task_for(config))
    assert fitted.best_accuracy >= 0.95
    work = root / "export"
    work.mkdir()
    export_checkpoint(
        ExportConfig(checkpoint=fitted.best_checkpoint, name="cue", repository=root / "models"),
        work,
    )
    return root / "models"


@pytest.mark.slow
def test_the_deciding_word_gets_the_attribution_and_its_span(repository: Path) -> None:
    sentences = ["Honestly, the LONG film was Awful today.", "our evening and story was superb"]
    config = ServerConfig(repository=repository, host="127.0.0.1", port=0)
    with ServerThread(config) as server, Client(server.address) as client:
        inputs = [api.Input(text=s) for s in sentences]
        plain = client.classify("cue", inputs, top_k=3)
        response = client.classify("cue", inputs, top_k=3, explain=api.ExplainOptions())
    expected = [("negative", "Awful"), ("positive", "superb")]
    for sentence, result, before, (label, word) in zip(
        sentences, response.results, plain.results, expected, strict=True
    ):
        assert [c.label for c in result.classes] == [c.label for c in before.classes]
        assert [c.score for c in result.classes] == pytest.approx([c.score for c in before.classes])
        assert result.classes[0].label == label
        (explanation,) = result.explanations
        assert explanation.label == label
        tokens = list(explanation.tokens)
        assert [sentence[t.start : t.end].lower() for t in tokens] == [t.token for t in tokens]
        best = max(tokens, key=lambda t: t.score)
        assert sentence[best.start : best.end] == word
        others = [t.score for t in tokens if t is not best]
        assert best.score > 0.25 and best.score > 3 * max(np.abs(others))


@pytest.mark.slow
def test_cli_colours_the_words_and_prints_spans_as_json(repository: Path) -> None:
    from click.testing import CliRunner

    from onyx.cli import main

    sentence = "the film was dreadful"
    config = ServerConfig(repository=repository, host="127.0.0.1", port=0)
    with ServerThread(config) as server:
        args = ["classify", "--model", "cue", "-s", server.address, "--explain", "-t", sentence]
        coloured = CliRunner().invoke(main, args, color=True)
        as_json = CliRunner().invoke(main, [*args, "--json"])
    assert coloured.exit_code == 0, coloured.output
    assert "\x1b[" in coloured.output and "dreadful" in coloured.output
    assert as_json.exit_code == 0, as_json.output
    (record,) = json.loads(as_json.output)
    tokens = record["explanations"][0]["tokens"]
    best = max(tokens, key=lambda t: t["score"])
    assert (best["token"], sentence[best["start"] : best["end"]]) == ("dreadful", "dreadful")
