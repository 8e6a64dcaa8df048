"""The text tokenizer and vocabulary, shared by training and serving (plain Python, no torch).

    vocabulary = Vocabulary.build(tokenize(t) for t in texts)      # training
    encoder = TextEncoder(vocabulary, max_length=256)
    ids = encoder.encode("Not bad at all!")                       # np.int64, shape (time,)

Training imports this module, so a served model tokenizes exactly as it was trained.

The tokenizer `onyx-words-v1`, step by step (bump the name when any step changes):

1. HTML line breaks (`<br>`, `<br/>`, `<br />`, any case) become spaces (IMDb reviews have them).
2. Unicode NFKC normalisation (full-width letters, ligatures and composed accents fold to one
   form), then `str.lower()`. Accents are kept: "café" and "cafe" are different words.
3. Typographic apostrophes (U+2019, U+2018, U+02BC, U+FF07) become `'`; invisible format
   characters (zero-width joiners, soft hyphens, byte-order marks: category Cf) are dropped.
4. Tokens are runs of letters and digits, with combining marks attached and inner apostrophes
   kept ("it's" is one token), or any other single non-space character followed by its marks
   (punctuation, symbols, each emoji): "great!!" -> ["great", "!", "!"].
5. Negations survive: a token ending in "n't" splits into its verb and "not" ("don't" -> "do",
   "not"; "can't" -> "can", "not"; "won't" -> "will", "not"), and "cannot" -> "can", "not", so
   the contracted and spelled-out negations are the same ids.

Encoding maps tokens to ids (`<pad>` = 0, `<unk>` = 1 for words not in the vocabulary) and keeps
the first `max_length` tokens. A text with no tokens at all (empty, or only spaces) encodes to a
single `<unk>`, so every sequence has length >= 1 and the model always sees something.

The vocabulary file holds one token per line, line number = id, UTF-8, `\\n` line ends (tokens
never contain whitespace). The exact behaviour also depends on the Unicode tables of the Python
running it (`unicodedata.unidata_version`); train and serve on the same Python minor version.

Variable-length batching: each request is encoded to its own length; the server's batcher pads a
batch only to its longest sequence (`pad_batch`), and the exported model
masks padding (ids == pad_id) in-graph, so requests of any length batch together and padding
never changes a score.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from onyx.contract.errors import ConfigError, InvalidInput
from onyx.contract.layout import inside
from onyx.proto.v1 import model_config_pb2 as pb

TOKENIZER_NAME = "onyx-words-v1"
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

_HTML_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})
# Irregular verb stems left when "n't" is cut off.
_NEGATED_STEMS = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}


# Combining marks (M*) and format characters (Cf) exist only in planes 0, 1 and 14; scanning
# just those keeps the import fast.
def _scanned() -> Iterator[int]:
    return itertools.chain(range(0x20000), range(0xE0000, 0xE1000))


def _mark_class() -> str:
    """A regex character class body covering every combining mark (Unicode category M*)."""
    ranges: list[tuple[int, int]] = []
    for code in _scanned():
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


_MARKS = _mark_class()
_DROP_FORMAT = {c: None for c in _scanned() if unicodedata.category(chr(c)) == "Cf"}
_WORD = rf"(?:[^\W_]|[{_MARKS}])"
_TOKEN = re.compile(rf"{_WORD}+(?:'{_WORD}+)*|[^\s{_MARKS}][{_MARKS}]*")


def normalize(text: str) -> str:
    """Steps 1-3: breaks to spaces, NFKC, lower case, one apostrophe, no format characters."""
    text = _HTML_BREAK.sub(" ", text)
    text = unicodedata.normalize("NFKC", text).lower()
    return text.translate(_APOSTROPHES).translate(_DROP_FORMAT)


def tokenize(text: str) -> list[str]:
    """The `onyx-words-v1` tokens of `text` (see the module docstring)."""
    tokens: list[str] = []
    for token in _TOKEN.findall(normalize(text)):
        if token.endswith("n't") and len(token) > 3:
            stem = token[:-3]
            tokens += [_NEGATED_STEMS.get(stem, stem), "not"]
        elif token == "cannot":
            tokens += ["can", "not"]
        else:
            tokens.append(token)
    return tokens


class Vocabulary:
    """Token <-> id; `<pad>` is 0 and `<unk>` is 1, then words by falling frequency."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {list(tokens[:2])}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        self.tokens = list(tokens)
        self._ids = {token: index for index, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int = 0
    ) -> Vocabulary:
        """From tokenized training texts; ties broken alphabetically so builds are reproducible.
        `max_size` counts the two special tokens (0: no limit)."""
        counts = Counter(token for tokens in token_lists for token in tokens)
        kept = (t for t, c in counts.items() if c >= min_freq)
        ranked = sorted(kept, key=lambda t: (-counts[t], t))
        if max_size:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD, UNK, *ranked])

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        text = path.read_text(encoding="utf-8")
        return cls(text.removesuffix("\n").split("\n"))

    def save(self, path: Path) -> None:
        path.write_text("\n".join(self.tokens) + "\n", encoding="utf-8")

    def ids(self, tokens: Sequence[str]) -> list[int]:
        return [self._ids.get(token, UNK_ID) for token in tokens]


class TextEncoder:
    """Text -> token ids for one model version: tokenizer, vocabulary and max length."""

    def __init__(
        self, vocabulary: Vocabulary, max_length: int, tokenizer: str = TOKENIZER_NAME
    ) -> None:
        if tokenizer != TOKENIZER_NAME:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; known: {TOKENIZER_NAME!r}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.vocabulary = vocabulary
        self.max_length = max_length

    def encode(self, text: str) -> np.ndarray:
        """(time,) int64 ids, 1 <= time <= max_length."""
        return self.encode_tokens(tokenize(text))

    def encode_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        """`encode` for text already tokenized (training tokenizes once for vocabulary and ids)."""
        ids = self.vocabulary.ids(tokens[: self.max_length]) or [UNK_ID]
        return np.asarray(ids, dtype=np.int64)

    def check_ids(self, ids: np.ndarray) -> None:
        """Refuse pre-tokenized ids (last axis: time) longer than `max_length` or outside the
        vocabulary: a long row would make its whole batch pad to it, a bad id fail the batch.

        Raw ids are refused, not truncated: cutting a sequence the client tokenized itself
        would silently classify something else than it sent."""
        if ids.ndim and ids.shape[-1] > self.max_length:
            raise InvalidInput(
                f"{ids.shape[-1]} token ids, over the model's text.max_length limit of "
                f"{self.max_length}; send at most {self.max_length} ids per input"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.vocabulary)):
            raise InvalidInput(
                f"token ids must be in [0, {len(self.vocabulary)}), got {ids.min()}..{ids.max()}"
            )


def pad_rows(blocks: Sequence[np.ndarray], pad_id: int = PAD_ID) -> np.ndarray:
    """Stack (n_i, T_i) id blocks into one (sum n_i, max T_i) batch, right-padded with `pad_id`:
    each batch is padded only to its own longest sequence, never to max_length."""
    longest = max(block.shape[1] for block in blocks)
    rows = sum(block.shape[0] for block in blocks)
    batch = np.full((rows, longest), pad_id, dtype=blocks[0].dtype)
    row = 0
    for block in blocks:
        batch[row : row + block.shape[0], : block.shape[1]] = block
        row += block.shape[0]
    return batch


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int = PAD_ID) -> np.ndarray:
    """Right-pad 1-D id arrays to the longest: (batch, longest) int64."""
    return pad_rows([np.asarray(s, dtype=np.int64)[None] for s in sequences], pad_id)


def load_encoder(spec: pb.TextPreprocessing, version_dir: Path) -> TextEncoder:
    """The encoder of one model version. Its vocabulary file is published in the version folder
    next to model.onnx (each training builds its own); a hand-made repository may keep it in the
    model folder instead."""
    if (spec.pad_id, spec.unk_id) != (PAD_ID, UNK_ID):
        raise ConfigError(f"text.pad_id and text.unk_id must be {PAD_ID} and {UNK_ID}")
    # Each candidate must stay inside its folder, symlinks resolved (`layout.inside`); errors
    # never quote the file (a config naming /etc/passwd must not show it to clients).
    folders = [version_dir, version_dir.parent]
    candidates = [folder / spec.vocabulary_file for folder in folders]
    found = next(((c, f) for c, f in zip(candidates, folders, strict=True) if c.is_file()), None)
    if found is None:
        raise ConfigError(f"vocabulary file not found; looked for {[str(c) for c in candidates]}")
    path = inside(found[0], found[1], "text.vocabulary_file")
    try:
        vocabulary = Vocabulary.load(path)
    except OSError as exc:
        raise ConfigError(f"{found[0]}: cannot read the vocabulary: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(
            f"{found[0]}: not a vocabulary file (UTF-8, one unique token a line, starting with "
            f"{PAD}, {UNK})"
        ) from None
    try:
        return TextEncoder(vocabulary, spec.max_length, spec.tokenizer)
    except ValueError as exc:  # the config's own values: tokenizer, max_length
        raise ConfigError(f"{found[0]}: {exc}") from exc
