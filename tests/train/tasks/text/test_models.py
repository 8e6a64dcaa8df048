"""The sentiment RNN: padding never changes a prediction; word vectors load into the embedding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from onyx.contract.text import PAD, UNK, Vocabulary
from onyx.train.tasks.text.models import (
    TextClassifier,
    TextModelConfig,
    load_word_vectors,
    reverse_padded,
)

VARIANTS = [
    ("lstm", False, "last"),
    ("lstm", True, "last"),
    ("gru", False, "last"),
    ("gru", True, "last"),
    ("lstm", True, "mean"),
    ("gru", False, "mean"),
    ("lstm", False, "max"),
    ("gru", True, "max"),
]


@pytest.mark.parametrize(("cell", "bidirectional", "pooling"), VARIANTS)
def test_padding_does_not_change_the_scores(cell: str, bidirectional: bool, pooling: str) -> None:
    torch.manual_seed(0)
    config = TextModelConfig(
        vocab_size=30,
        num_classes=3,
        cell=cell,
        embed_dim=8,
        hidden=12,  # type: ignore[arg-type]
        layers=2,
        bidirectional=bidirectional,
        pooling=pooling,
    )  # type: ignore[arg-type]
    model = TextClassifier(config).eval()
    sequences = [torch.randint(2, 30, (n,)) for n in (1, 4, 9)]
    with torch.no_grad():
        alone = torch.cat([model(s.unsqueeze(0)) for s in sequences])
        batch = torch.zeros(3, 16, dtype=torch.int64)  # padded well past the longest
        for row, s in enumerate(sequences):
            batch[row, : len(s)] = s
        padded = model(batch)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(alone[1], alone[2])  # the check can fail: rows really differ


def test_reverse_padded_reverses_within_length_only() -> None:
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]).unsqueeze(2)
    reversed_ = reverse_padded(x, torch.tensor([3, 2]))
    assert reversed_.squeeze(2).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]
    assert torch.equal(reverse_padded(reversed_, torch.tensor([3, 2])), x)


def test_unknown_cell_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="lstm, gru"):
        TextClassifier(TextModelConfig(vocab_size=5, num_classes=2, cell="rnn"))  # type: ignore[arg-type]


def test_word_vectors_fill_known_words(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("3 2\ngood 0.5 1.5\nbad -1 -2\nunseen 9 9\n", encoding="utf-8")
    vocabulary = Vocabulary([PAD, UNK, "good", "bad", "meh"])
    matrix, found = load_word_vectors(vectors, vocabulary, embed_dim=2)
    assert found == 2
    assert matrix[2].tolist() == [0.5, 1.5]
    assert matrix[3].tolist() == [-1.0, -2.0]
    assert matrix[0].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"vectors.txt:2: expected a word and 3 numbers"):
        load_word_vectors(vectors, vocabulary, embed_dim=3)
