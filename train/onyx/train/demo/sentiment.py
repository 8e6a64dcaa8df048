"""The sentiment half of `onyx demo`: train a small LSTM on generated reviews, publish it as
`sentiment`, and classify a few sentences that need word order and negation.

    version, accuracy = publish_sentiment(Path("models"), Path("/tmp/work"))
    rows = classify_sentences(client)      # with a server running on the repository

The sentences and their expected labels are in EXPECTED; tests check the served model agrees.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onyx.client.classifier import Client
from onyx.train.config import TextTrainConfig
from onyx.train.data.reviews import generate_reviews, write_jsonl
from onyx.train.demo.publishing import publish_best
from onyx.train.engine.loop import FitResult, fit
from onyx.train.export import ExportResult
from onyx.train.tasks.registry import task_for

log = logging.getLogger(__name__)

MODEL_NAME = "sentiment"
EXPECTED = {
    "The movie was not bad at all.": "positive",
    "The acting was good, but the plot was terrible.": "negative",
    "Although the plot was boring, the ending was wonderful.": "positive",
    "The film was bad, not good.": "negative",
    "The soundtrack wasn't great.": "negative",
    "The story was never dull.": "positive",
}
SENTENCES = tuple(EXPECTED)


@dataclass(frozen=True)
class SentimentDemo:
    data: Path
    fit: FitResult
    exported: ExportResult

    @property
    def version(self) -> int:
        return self.exported.version

    @property
    def val_accuracy(self) -> float:
        return self.fit.best_accuracy


def publish_sentiment(
    repository: Path, work: Path, epochs: int = 6, device: str = "auto"
) -> SentimentDemo:
    """Generate 3000 reviews, train (a few seconds on 2 cores), export and publish."""
    data = write_jsonl(generate_reviews(3000, seed=0), work / "reviews.jsonl")
    config = TextTrainConfig(
        data=data,
        out_dir=work / "run",
        max_length=64,
        embed_dim=32,
        hidden=64,
        epochs=epochs,
        batch_size=32,
        lr=5e-3,
        device=device,
    )
    fitted = fit(task_for(config))
    exported = publish_best(fitted, MODEL_NAME, repository, work / "export")
    return SentimentDemo(data, fitted, exported)


def classify_sentences(
    client: Client, sentences: Sequence[str] = SENTENCES
) -> list[tuple[str, str, float]]:
    """(sentence, top label, its score) for each sentence, over gRPC in one request."""
    response = client.classify_texts(MODEL_NAME, sentences, top_k=1)
    return [
        (sentence, result.classes[0].label, result.classes[0].score)
        for sentence, result in zip(sentences, response.results, strict=True)
    ]


def format_sentences(rows: Sequence[tuple[str, str, float]]) -> str:
    width = max(len(sentence) for sentence, _, _ in rows)
    return "\n".join(f"{s:<{width}}  {label:<8} {score:.3f}" for s, label, score in rows)
