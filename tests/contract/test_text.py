"""The shared tokenizer, vocabulary and per-version encoder (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onyx.contract.errors import ConfigError, InvalidInput
from onyx.contract.text import (
    PAD,
    TOKENIZER_NAME,
    UNK,
    UNK_ID,
    TextEncoder,
    Vocabulary,
    load_encoder,
    pad_batch,
    tokenize,
)
from onyx.proto.v1 import model_config_pb2 as pb


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Not bad at all!", ["not", "bad", "at", "all", "!"]),
        ("bad, not good", ["bad", ",", "not", "good"]),
        ("I don't like it", ["i", "do", "not", "like", "it"]),
        ("Don\u2019t", ["do", "not"]),  # typographic apostrophe
        ("can't won't cannot isn't", ["can", "not", "will", "not", "can", "not", "is", "not"]),
        ("it's fine", ["it's", "fine"]),
        ("Great<br /><br />Movie<BR>end", ["great", "movie", "end"]),
        ("Caf\u00e9 vs Cafe\u0301", ["café", "vs", "café"]),  # NFKC composes the accent
        ("\uff26\uff55\uff4c\uff4c width", ["full", "width"]),
        ("\U0001f600\U0001f44d!!", ["\U0001f600", "\U0001f44d", "!", "!"]),
        ("\u2764\ufe0f love", ["\u2764\ufe0f", "love"]),  # emoji keeps its variation selector
        ("zero\u200bwidth soft\u00adhyphen", ["zerowidth", "softhyphen"]),
        ("well-made 10/10", ["well", "-", "made", "10", "/", "10"]),
        ("", []),
        ("   \n\t", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_vocabulary_ranks_by_frequency_then_alphabet() -> None:
    vocabulary = Vocabulary.build([["b", "a", "c"], ["a", "c"], ["a"]], min_freq=1)
    assert vocabulary.tokens == [PAD, UNK, "a", "c", "b"]
    assert Vocabulary.build([["b", "a", "c"], ["a", "c"]], min_freq=2).tokens == [
        PAD,
        UNK,
        "a",
        "c",
    ]
    assert Vocabulary.build([["b", "a", "c"], ["a", "c"]], max_size=3).tokens == [PAD, UNK, "a"]


def test_vocabulary_file_round_trip(tmp_path: Path) -> None:
    # Tokens that would break a splitlines()-based reader: next-line and line-separator-ish text.
    tokens = [PAD, UNK, "café", "\U0001f600", "it's", "\u2764\ufe0f", "\x85x"]
    Vocabulary(tokens).save(tmp_path / "vocab.txt")
    assert Vocabulary.load(tmp_path / "vocab.txt").tokens == tokens


def test_vocabulary_refuses_bad_specials() -> None:
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", PAD, UNK])


def test_encoder_truncates_and_never_returns_empty() -> None:
    encoder = TextEncoder(Vocabulary([PAD, UNK, "good", "not"]), max_length=3)
    ids = encoder.encode("not good at all, good")
    assert ids.dtype == np.int64
    assert ids.tolist() == [3, 2, UNK_ID]
    assert encoder.encode("").tolist() == [UNK_ID]
    assert len(encoder.encode("good " * 100_000)) == 3


def test_encoder_refuses_unknown_tokenizer() -> None:
    with pytest.raises(ValueError, match=TOKENIZER_NAME):
        TextEncoder(Vocabulary([PAD, UNK]), 8, tokenizer="onyx-words-v99")


def test_check_ids_refuses_out_of_vocabulary_ids() -> None:
    encoder = TextEncoder(Vocabulary([PAD, UNK, "a"]), 8)
    encoder.check_ids(np.array([0, 1, 2]))
    with pytest.raises(InvalidInput, match=r"\[0, 3\)"):
        encoder.check_ids(np.array([1, 3]))


def test_pad_batch() -> None:
    batch = pad_batch([np.array([5, 6, 7]), np.array([8])])
    assert batch.tolist() == [[5, 6, 7], [8, 0, 0]]


def _spec(**overrides: object) -> pb.TextPreprocessing:
    fields: dict[str, object] = {
        "vocabulary_file": "vocab.txt",
        "max_length": 4,
        "pad_id": 0,
        "unk_id": 1,
        "tokenizer": TOKENIZER_NAME,
    }
    return pb.TextPreprocessing(**{**fields, **overrides})  # type: ignore[arg-type]


def test_load_encoder_prefers_the_version_folder(tmp_path: Path) -> None:
    version_dir = tmp_path / "model" / "2"
    version_dir.mkdir(parents=True)
    Vocabulary([PAD, UNK, "model-level"]).save(tmp_path / "model" / "vocab.txt")
    assert load_encoder(_spec(), version_dir).vocabulary.tokens[2] == "model-level"
    Vocabulary([PAD, UNK, "version-level"]).save(version_dir / "vocab.txt")
    assert load_encoder(_spec(), version_dir).vocabulary.tokens[2] == "version-level"


def test_load_encoder_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vocabulary file not found"):
        load_encoder(_spec(), tmp_path)
    (tmp_path / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"vocab\.txt: not a vocabulary file"):
        load_encoder(_spec(), tmp_path)
    with pytest.raises(ConfigError, match="pad_id"):
        load_encoder(_spec(pad_id=5), tmp_path)


def test_a_model_needing_another_tokenizer_fails_to_load(tmp_path: Path) -> None:
    Vocabulary([PAD, UNK]).save(tmp_path / "vocab.txt")
    with pytest.raises(ConfigError, match="unknown tokenizer 'onyx-words-v99'"):
        load_encoder(_spec(tokenizer="onyx-words-v99"), tmp_path)
