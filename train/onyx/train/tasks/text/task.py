"""The text task for the engine: labelled texts in, an RNN classifier out.

    task = TextTask(TextTrainConfig(data=Path("reviews.jsonl"), out_dir=Path("runs/sentiment")))
    result = fit(task)          # onyx.train.engine.loop

The vocabulary is built from the training split (a resumed run keeps its checkpoint's); every
checkpoint carries what export and the server need: vocabulary, model_config, max_length and
the tokenizer's name.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from onyx.contract.text import PAD, TOKENIZER_NAME, UNK, TextEncoder, Vocabulary, tokenize
from onyx.train.config import TextTrainConfig
from onyx.train.engine.distributed import DistContext
from onyx.train.engine.task import Checkpoint, TaskData
from onyx.train.tasks.text.data import EncodedTexts, collate_padded, load_text_split
from onyx.train.tasks.text.models import TextClassifier, TextModelConfig, load_word_vectors

log = logging.getLogger(__name__)


class TextTask:
    kind = "text"

    def __init__(self, config: TextTrainConfig) -> None:
        self._config = config
        self.vocabulary = Vocabulary([PAD, UNK])

    @property
    def config(self) -> TextTrainConfig:
        return self._config

    def load_data(self, context: DistContext, resume: Checkpoint | None) -> TaskData:  # noqa: ARG002 (context: the protocol's)
        config = self.config
        split = load_text_split(
            Path(config.data),
            Path(config.val_data) if config.val_data else None,
            config.labels,
            config.val_fraction,
            config.seed,
            config.text_column,
            config.label_column,
        )
        # Tokenized once: for the vocabulary and for the training ids.
        train_tokens = [tokenize(e.text) for e in split.train]
        self.vocabulary = (
            Vocabulary(resume["vocabulary"])
            if resume is not None
            else Vocabulary.build(train_tokens, config.min_freq, config.max_vocab)
        )
        encoder = TextEncoder(self.vocabulary, config.max_length)
        train = EncodedTexts(split.train, split.labels, encoder, train_tokens)
        test = EncodedTexts(split.test, split.labels, encoder) if split.test else None
        return TaskData(
            labels=list(split.labels),
            train=train,
            val=EncodedTexts(split.val, split.labels, encoder),
            train_targets=train.targets,
            test=test,
            collate=collate_padded,
            summary=f"{cell_description(config)}, vocabulary {len(self.vocabulary)}",
        )

    def build_model(self, data: TaskData, resume: Checkpoint | None) -> nn.Module:
        config = self.config
        architecture = TextModelConfig(
            vocab_size=len(self.vocabulary),
            num_classes=len(data.labels),
            cell=config.cell,
            embed_dim=config.embed_dim,
            hidden=config.hidden,
            layers=config.layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            pooling=config.pooling,
        )
        if resume is not None:
            _check_same_architecture(architecture, resume, config.resume)
        model = TextClassifier(architecture)
        if resume is not None:
            model.load_state_dict(resume["model"])
        elif config.vectors:
            self._load_vectors(model)
        model.embedding.weight.requires_grad_(not (config.vectors and config.freeze_vectors))
        return model

    def _load_vectors(self, model: TextClassifier) -> None:
        config = self.config
        matrix, found = load_word_vectors(
            Path(config.vectors), self.vocabulary, config.embed_dim, config.seed
        )
        model.embedding.weight.data.copy_(matrix)
        log.info(
            "word vectors: %d of %d vocabulary words found in %s (%s)",
            found,
            len(self.vocabulary),
            config.vectors,
            "frozen" if config.freeze_vectors else "trainable",
        )

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [{"params": trainable, "lr": self.config.lr, "name": "all"}]

    def start_epoch(self, model: nn.Module, epoch: int) -> str:  # noqa: ARG002
        frozen = self.config.vectors and self.config.freeze_vectors
        return "word vectors frozen" if frozen else "all layers trainable"

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        assert isinstance(model, TextClassifier)
        return {
            "model_config": asdict(model.config),
            "vocabulary": self.vocabulary.tokens,
            "max_length": self.config.max_length,
            "tokenizer": TOKENIZER_NAME,
        }


def _check_same_architecture(architecture: TextModelConfig, resume: Checkpoint, path: str) -> None:
    """A resumed run must rebuild the checkpoint's network: a changed --pooling or --hidden
    would otherwise train (or fail to load into) a different model than the one saved."""
    saved = resume.get("model_config") or {}
    differ = {
        name: (saved[name], value)
        for name, value in asdict(architecture).items()
        if name in saved and saved[name] != value
    }
    if differ:
        changes = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(differ.items()))
        raise ValueError(f"--resume {path} was trained with another architecture ({changes})")


def cell_description(config: TextTrainConfig) -> str:
    """The recurrent setup in words for the training log, e.g. "bidirectional 2-layer LSTM
    (hidden 128 per direction, embeddings 64, mean pooling)"."""
    direction = "bidirectional" if config.bidirectional else "unidirectional"
    return (
        f"{direction} {config.layers}-layer {config.cell.upper()} (hidden {config.hidden} per "
        f"direction, embeddings {config.embed_dim}, {config.pooling} pooling)"
    )
