"""The sentiment path end to end: train on the order-dependent corpus, export, serve over gRPC.

One small LSTM is trained once per module on the generated reviews; the tests check it beats a
bag-of-words baseline, that the server tokenizes exactly as training did, and that scores over
gRPC equal ONNX Runtime run in-process on the training-time ids.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from onyx.cli import main
from onyx.client.classifier import Client
from onyx.contract.text import TextEncoder, Vocabulary, tokenize
from onyx.proto.v1 import classifier_pb2 as api
from onyx.serve.background import ServerThread
from onyx.serve.config import InputLimits, ServerConfig
from onyx.serve.inputs import decode_inputs
from onyx.serve.repository import Repository
from onyx.train.config import TextTrainConfig
from onyx.train.data.reviews import generate_reviews, write_jsonl
from onyx.train.demo.sentiment import EXPECTED, classify_sentences, publish_sentiment
from onyx.train.engine.loop import FitResult, fit
from onyx.train.export import ExportResult
from onyx.train.tasks.registry import task_for
from onyx.train.tasks.text.data import EncodedTexts, Example, TextSplit, load_text_split

MAX_LENGTH = 64  # the demo model's
TRICKY = [
    "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9 \u2014 Cafe\u0301 with a combining accent",
    "\U0001f600\U0001f44d\U0001f3fd \u2764\ufe0f the movie wasn\u2019t bad at all \U0001f3ac",
    "the plot was good<br /><br />but the acting<BR>was terrible .",
    "\uff34\uff28\uff25 full-width ending was \uff27\uff2f\uff2f\uff24 ; zero\u200bwidth\u00ad",
    "the story was not boring " * 400,  # far past max_length (and thousands of characters)
    "",
    "   ",
]


@dataclass(frozen=True)
class Trained:
    fit: FitResult
    split: TextSplit
    exported: ExportResult
    repository: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The demo's sentiment model: 3000 generated reviews, a small LSTM, 6 epochs, published."""
    root = tmp_path_factory.mktemp("sentiment")
    demo = publish_sentiment(root / "models", root / "work", device="cpu")
    config = TextTrainConfig(data=demo.data)
    split = load_text_split(demo.data, None, [], config.val_fraction, config.seed)
    return Trained(demo.fit, split, demo.exported, root / "models")


def bag_of_words_accuracy(train: list[Example], val: list[Example]) -> float:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
    features = vectorizer.fit_transform([e.text for e in train])
    model = LogisticRegression(max_iter=2000).fit(features, [e.label for e in train])
    return float(model.score(vectorizer.transform([e.text for e in val]), [e.label for e in val]))


def test_rnn_learns_order_and_negation_that_bag_of_words_cannot(trained: Trained) -> None:
    bow = bag_of_words_accuracy(trained.split.train, trained.split.val)
    assert trained.fit.best_accuracy >= 0.95
    assert bow <= 0.75
    assert trained.fit.best_accuracy - bow >= 0.2


def test_metrics_checkpoints_and_plots_are_written(trained: Trained) -> None:
    run = trained.fit.best_checkpoint.parent
    metrics = json.loads((run / "metrics.json").read_text())
    report = metrics["val"]
    assert report["accuracy"] == trained.fit.best_accuracy
    assert {"accuracy", "macro", "per_class", "confusion_matrix", "binary"} <= report.keys()
    assert {"precision", "recall", "f1", "roc_auc"} <= report["binary"].keys()
    assert np.sum(report["confusion_matrix"]) == len(trained.split.val)
    for name in ("best.pt", "last.pt", "config.json", "curves.png", "confusion.png"):
        assert (run / name).is_file(), name
    config = trained.exported.config
    assert list(config.input.dims) == [-1, -1]
    assert config.text.max_length == MAX_LENGTH
    assert config.export.exporter in ("dynamo", "torchscript")
    assert (trained.exported.model_path.parent / config.text.vocabulary_file).is_file()


def training_ids(trained: Trained, texts: list[str]) -> list[np.ndarray]:
    """Ids exactly as the training loop computed them (EncodedTexts over the checkpoint's vocab)."""
    checkpoint = torch.load(trained.fit.best_checkpoint, map_location="cpu", weights_only=True)
    encoder = TextEncoder(Vocabulary(checkpoint["vocabulary"]), checkpoint["max_length"])
    examples = [Example(t, "positive", f"tricky:{i}") for i, t in enumerate(texts)]
    return EncodedTexts(examples, ["negative", "positive"], encoder).ids


def serving_ids(trained: Trained, texts: list[str]) -> list[np.ndarray]:
    """Ids as the server computes them: the repository's per-version encoder, one text each."""

    async def load() -> list[np.ndarray]:
        repository = Repository(trained.repository)
        await repository.load_all()
        try:
            model = repository.get("sentiment")
            version = model.version()
            assert version.config is not None
            return [
                decode_inputs(
                    [api.Input(text=t)], version.config, InputLimits(), version.text_encoder
                )[0]
                for t in texts
            ]
        finally:
            await repository.close()

    return asyncio.run(load())


def test_train_time_and_serve_time_ids_are_identical(trained: Trained) -> None:
    expected, actual = training_ids(trained, TRICKY), serving_ids(trained, TRICKY)
    assert [ids.tolist() for ids in actual] == [ids.tolist() for ids in expected]
    assert len(expected[4]) == MAX_LENGTH  # truncated, not dropped
    assert expected[5].tolist() == [1]  # empty text: a single <unk>


def expected_scores(trained: Trained, texts: list[str]) -> np.ndarray:
    """Softmax of in-process ONNX Runtime on the training-time ids, one text at a time (no
    padding at all)."""
    path = str(trained.exported.model_path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rows = []
    for ids in training_ids(trained, texts):
        (logits,) = session.run(None, {"input": ids[np.newaxis]})
        rows.append(torch.softmax(torch.from_numpy(logits[0]), 0).numpy())
    return np.stack(rows)


def served_scores(response: api.ClassifyResponse) -> np.ndarray:
    labels = ["negative", "positive"]
    return np.array(
        [[{c.label: c.score for c in r.classes}[k] for k in labels] for r in response.results]
    )


def test_scores_over_grpc_equal_onnx_runtime_in_process(trained: Trained) -> None:
    texts = [*TRICKY, "not bad at all", "the acting was good , not awful ."]
    expected = expected_scores(trained, texts)
    config = ServerConfig(repository=trained.repository, host="127.0.0.1", port=0, device="cpu")
    with ServerThread(config) as server, Client(server.address) as client:
        # All texts in one request: padded to the longest of the request.
        response = client.classify_texts("sentiment", texts, top_k=2)
        np.testing.assert_allclose(served_scores(response), expected, atol=1e-5)
        # One text per request, all in flight at once: the batcher pads across requests.
        with ThreadPoolExecutor(len(texts)) as pool:
            responses = list(pool.map(lambda t: client.classify_texts("sentiment", [t], 2), texts))
        concurrent = np.concatenate([served_scores(r) for r in responses])
        np.testing.assert_allclose(concurrent, expected, atol=1e-5)
        assert {s: label for s, label, _ in classify_sentences(client)} == EXPECTED
        with pytest.raises(grpc.RpcError) as error:
            client.classify("sentiment", [api.Input(image=b"\x89PNG\r\n")])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is a text model" in (error.value.details() or "")


def test_resume_continues_from_last_checkpoint(tmp_path: Path) -> None:
    data = write_jsonl(generate_reviews(200, seed=1), tmp_path / "small.jsonl")
    common = {
        "data": str(data),
        "out_dir": str(tmp_path / "run"),
        "embed_dim": 8,
        "hidden": 8,
        "plots": False,
        "device": "cpu",
        "patience": 0,
    }
    first = fit(task_for(TextTrainConfig(epochs=1, **common)))  # type: ignore[arg-type]
    last = str(tmp_path / "run" / "last.pt")
    resumed = fit(task_for(TextTrainConfig(epochs=2, resume=last, **common)))  # type: ignore[arg-type]
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[0] == first.history[0]


def test_cli_reports_bad_data_with_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("text,label\ngood film,pos\n,neg\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["train", "text", str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert f"{data}:3: empty text" in result.output
