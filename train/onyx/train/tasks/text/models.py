"""The sentiment RNN: token ids -> embedding -> LSTM/GRU layers -> pooling over time -> classes.

    model = TextClassifier(TextModelConfig(vocab_size=5000, num_classes=2, cell="lstm"))
    logits = model(ids)        # ids: (B, T) int64, right-padded with pad_id

Padding is masked in-graph from `ids != pad_id`, so the exported ONNX model takes one int64
(batch, time) input and a sequence scores the same whether or not it is padded:

- Forward directions read left to right, so padding (always on the right) comes after every real
  step and cannot change it.
- Backward directions run as a forward RNN over each sequence reversed *within its own length*
  (padding stays on the right), then are flipped back the same way. This replaces
  `bidirectional=True`, whose backward pass would start in the padding (and whose ONNX export
  has frozen the time axis, pytorch #191855).
- Pooling reads only real steps: `last` takes each direction's state after its last real token,
  `mean`/`max` mask the padded steps out.

Each layer is a single-layer, single-direction `nn.LSTM`/`nn.GRU`, which exports to one ONNX
LSTM/GRU node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from onyx.contract.text import PAD_ID, Vocabulary
from onyx.train.config import Cell, Pooling

CELLS: dict[str, type[nn.LSTM] | type[nn.GRU]] = {"lstm": nn.LSTM, "gru": nn.GRU}
POOLINGS = ("last", "mean", "max")


@dataclass
class TextModelConfig:
    vocab_size: int
    num_classes: int
    cell: Cell = "lstm"
    # 64-d embeddings and 128 hidden units fit sentiment on a few thousand reviews; IMDb-sized
    # data likes 128/256.
    embed_dim: int = 64
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = False
    # Applied to the embeddings, between layers and before the classifier.
    dropout: float = 0.2
    pooling: Pooling = "last"
    pad_id: int = PAD_ID


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of x (B, T, C) within its first `lengths[b]` steps; padding stays."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    last = lengths.unsqueeze(1) - 1  # (B, 1)
    index = torch.where(steps <= last, last - steps, steps)  # (B, T); an involution
    return torch.gather(x, 1, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


def _rnn(config: TextModelConfig, input_size: int) -> nn.Module:
    return CELLS[config.cell](input_size, config.hidden, num_layers=1, batch_first=True)


class TextClassifier(nn.Module):
    def __init__(self, config: TextModelConfig) -> None:
        super().__init__()
        if config.cell not in CELLS:
            raise ValueError(f"unknown cell {config.cell!r}; choose one of: {', '.join(CELLS)}")
        if config.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {config.pooling!r}; choose one of: {POOLINGS}")
        self.config = config
        self.embedding = nn.Embedding(
            config.vocab_size, config.embed_dim, padding_idx=config.pad_id
        )
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        sizes = [config.embed_dim] + [config.hidden * directions] * (config.layers - 1)
        self.forward_rnns = nn.ModuleList(_rnn(config, size) for size in sizes)
        self.backward_rnns = nn.ModuleList(
            _rnn(config, size) for size in (sizes if config.bidirectional else [])
        )
        self.classifier = nn.Linear(config.hidden * directions, config.num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) int64 -> (B, classes)
        mask = ids != self.config.pad_id  # (B, T)
        # At least 1, so an all-padding row (warm-up input) stays finite.
        lengths = mask.sum(1).clamp(min=1)  # (B,)
        x = self.dropout(self.embedding(ids))  # (B, T, E)
        for layer in range(self.config.layers):
            if layer:
                x = self.dropout(x)
            x = self._layer(layer, x, lengths)  # (B, T, H * directions)
        logits: torch.Tensor = self.classifier(self.dropout(self._pool(x, mask, lengths)))
        return logits

    def _layer(self, layer: int, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        forward, _ = self.forward_rnns[layer](x)  # (B, T, H)
        if not self.config.bidirectional:
            return forward  # type: ignore[no-any-return]
        backward, _ = self.backward_rnns[layer](reverse_padded(x, lengths))
        return torch.cat([forward, reverse_padded(backward, lengths)], dim=2)

    def _pool(self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "last":
            return self._last(x, lengths)
        keep = mask.unsqueeze(2)  # (B, T, 1)
        if self.config.pooling == "mean":
            return (x * keep).sum(1) / lengths.unsqueeze(1).to(x.dtype)
        return x.masked_fill(~keep, torch.finfo(x.dtype).min).amax(1)

    def _last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Forward half at the last real step; the backward half (flipped back) at step 0."""
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.shape[2])  # (B, 1, D)
        last = torch.gather(x, 1, index).squeeze(1)  # (B, D)
        if not self.config.bidirectional:
            return last
        hidden = self.config.hidden
        return torch.cat([last[:, :hidden], x[:, 0, hidden:]], dim=1)


def load_word_vectors(
    path: Path, vocabulary: Vocabulary, embed_dim: int, seed: int = 0
) -> tuple[torch.Tensor, int]:
    """An embedding matrix from a text-format vectors file ("word v1 v2 ..." per line, an optional
    "count dim" header as word2vec writes): rows of known words are copied, the others are small
    random values, `<pad>` is zero. Returns (matrix, how many vocabulary words were found)."""
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(len(vocabulary), embed_dim, generator=generator) * 0.1
    wanted = {token: index for index, token in enumerate(vocabulary.tokens)}
    found = 0
    with path.open(encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2:
                continue  # word2vec header
            if len(parts) != embed_dim + 1:
                raise ValueError(
                    f"{path}:{number}: expected a word and {embed_dim} numbers (--embed-dim), "
                    f"got {len(parts) - 1} numbers"
                )
            index = wanted.get(parts[0])
            if index is not None and index != PAD_ID:
                try:
                    matrix[index] = torch.tensor([float(v) for v in parts[1:]])
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: {exc}") from exc
                found += 1
    matrix[PAD_ID] = 0
    return matrix, found
