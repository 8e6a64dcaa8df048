"""Which words decided it: per-token occlusion for text models, mapped to character spans.

A sentence of L tokens and its L leave-one-token-out variants go through the model as one batch
of L + 1 rows (the batcher runs them together); a token's attribution is how much the explained
class's score drops when it is left out (negative: the class gains without it).

    rows = occlusion_rows(ids)                  # (L + 1, L), right-padded with pad_id
    drops = occlusion_scores(scores, c)         # (L,) from the activated scores of those rows
    spans = token_spans(text)                   # [(token, start, end)] in the text as sent

Only numpy: serving never imports torch.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from onyx.contract.text import _NEGATED_STEMS, _TOKEN, normalize

# A token and its characters [start, end) in the original text.
Span = tuple[str, int, int]


def occlusion_rows(ids: np.ndarray, pad_id: int) -> np.ndarray:
    """The sequence, then each variant without one of its tokens: (L + 1, L), padded right."""
    length = len(ids)
    rows = np.full((length + 1, length), pad_id, dtype=ids.dtype)
    rows[0] = ids
    for j in range(length):
        variant = np.delete(ids, j)
        rows[j + 1, : len(variant)] = variant
    return rows


def occlusion_scores(scores: np.ndarray, index: int) -> np.ndarray:
    """Score drop of class `index` per left-out token: scores (L + 1, classes) -> (L,)."""
    return np.asarray(scores[0, index] - scores[1:, index], dtype=np.float64)


def _normalized_with_origins(text: str) -> tuple[str, list[int]]:
    """`normalize` character by character, remembering where each output character came from."""
    pieces, origins = [], []
    for index, char in enumerate(text):
        piece = normalize(char)
        pieces.append(piece)
        origins += [index] * len(piece)
    return "".join(pieces), origins


def token_spans(text: str) -> list[Span]:
    """The tokens of `text` as `onyx.contract.text.tokenize` makes them, with character spans of
    the original text (split contractions: "don't" -> "do" over "do", "not" over "n't")."""
    normalized, origins = _normalized_with_origins(text)
    if unicodedata.normalize("NFKC", normalized) != normalize(text):
        # Normalisation across characters (rare composed sequences): spans are approximate.
        normalized, origins = normalize(text), list(range(len(normalize(text))))
    spans: list[Span] = []
    for match in _TOKEN.finditer(normalized):
        token, start, end = match.group(), match.start(), match.end()

        def span(a: int, b: int, word: str) -> Span:
            first = origins[min(a, len(origins) - 1)] if origins else 0
            last = origins[min(b, len(origins)) - 1] + 1 if origins else 0
            return word, first, last

        if token.endswith("n't") and len(token) > 3:
            stem = token[:-3]
            spans += [
                span(start, end - 3, _NEGATED_STEMS.get(stem, stem)),
                span(end - 3, end, "not"),
            ]
        elif token == "cannot":
            spans += [span(start, start + 3, "can"), span(start + 3, end, "not")]
        else:
            spans.append(span(start, end, token))
    return spans
