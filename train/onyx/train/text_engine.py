"""Training the sentiment RNN: `fit_text` drives `train_epoch` and `predict`.

    result = fit_text(TextTrainConfig(data="reviews.jsonl", out_dir="runs/sentiment"))

AdamW with linear warm-up then cosine decay (stepped per batch), gradient clipping, early stopping
on validation accuracy with the best weights restored at the end. In `out_dir`:

    best.pt        the best epoch: {model, labels, vocabulary, model_config, ...} for `onyx export`
    last.pt        latest epoch plus optimizer, scheduler and history; `--resume` continues from it
    config.json    the resolved TextTrainConfig
    metrics.json   per-epoch history and the best weights' validation (and test) report
    curves.png, confusion.png
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from onyx.serve.text import TOKENIZER_NAME, TextEncoder, Vocabulary, tokenize
from onyx.train import checkpoint as ckpt
from onyx.train.config import save_json
from onyx.train.distributed import pick_device
from onyx.train.metrics import classification_report
from onyx.train.plots import plot_confusion_matrix, plot_training_curves
from onyx.train.schedule import lr_factor
from onyx.train.text_config import TextTrainConfig
from onyx.train.text_data import EncodedTexts, TextSplit, collate_padded, load_text_split
from onyx.train.text_models import TextClassifier, TextModelConfig, load_word_vectors

log = logging.getLogger(__name__)


@dataclass
class TextFitResult:
    best_checkpoint: Path
    best_accuracy: float
    report: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    test_report: dict[str, Any] | None = None


@dataclass
class _State:
    """What resuming restores besides the weights."""

    epoch: int = 0
    best_accuracy: float = -math.inf
    stale_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
) -> Any:
    """Linear warm-up from ~0 over `warmup_fraction` of the steps, then cosine decay to 0."""
    warmup = max(1, round(total_steps * warmup_fraction))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup, "cosine")
    )


def train_epoch(
    model: nn.Module,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    grad_clip: float,
    description: str,
) -> tuple[float, float]:
    """One pass over the training data; returns (mean loss, accuracy)."""
    model.train()
    # Sums stay on the device: reading them (.item()) every step would stall a GPU.
    total_loss, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    progress = tqdm(loader, desc=description, leave=False, dynamic_ncols=True)
    for step, (ids, targets) in enumerate(progress, start=1):
        ids, targets = ids.to(device), targets.to(device)
        logits = model(ids)  # (B, classes)
        loss = nn.functional.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        total_loss += loss.detach() * len(targets)
        correct += (logits.detach().argmax(1) == targets).sum()
        seen += len(targets)
        if step % 10 == 0:
            progress.set_postfix(
                loss=f"{float(total_loss) / seen:.4f}", acc=f"{float(correct) / seen:.3f}"
            )
    return float(total_loss) / max(seen, 1), float(correct) / max(seen, 1)


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader[Any], device: torch.device
) -> tuple[np.ndarray, np.ndarray, float]:
    """(targets, class probabilities, mean loss) over a loader, in eval mode."""
    model.eval()
    targets, probabilities, total_loss = [], [], 0.0
    for ids, target in loader:
        logits = model(ids.to(device)).cpu()
        total_loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        targets.append(target.numpy())
        probabilities.append(torch.softmax(logits, 1).numpy())
    y = np.concatenate(targets)
    return y, np.concatenate(probabilities), total_loss / max(len(y), 1)


def evaluate_report(
    model: nn.Module, loader: DataLoader[Any], labels: list[str], device: torch.device
) -> tuple[float, dict[str, Any]]:
    """(loss, classification report) of the model on a loader."""
    y, probabilities, loss = predict(model, loader, device)
    return loss, classification_report(y, probabilities, list(labels))


def build_vocabulary(train_tokens: list[list[str]], config: TextTrainConfig) -> Vocabulary:
    return Vocabulary.build(train_tokens, config.min_freq, config.max_vocab)


def build_model(
    config: TextTrainConfig, vocabulary: Vocabulary, num_classes: int
) -> TextClassifier:
    model_config = TextModelConfig(
        vocab_size=len(vocabulary),
        num_classes=num_classes,
        cell=config.cell,  # type: ignore[arg-type]
        embed_dim=config.embed_dim,
        hidden=config.hidden,
        layers=config.layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        pooling=config.pooling,  # type: ignore[arg-type]
    )
    model = TextClassifier(model_config)
    if config.vectors:
        matrix, found = load_word_vectors(
            Path(config.vectors), vocabulary, config.embed_dim, config.seed
        )
        model.embedding.weight.data.copy_(matrix)
        model.embedding.weight.requires_grad_(not config.freeze_vectors)
        log.info(
            "word vectors: %d of %d vocabulary words found in %s (%s)",
            found,
            len(vocabulary),
            config.vectors,
            "frozen" if config.freeze_vectors else "trainable",
        )
    return model


def _loaders(
    split: TextSplit,
    encoder: TextEncoder,
    config: TextTrainConfig,
    train_tokens: list[list[str]],
) -> dict[str, DataLoader[Any]]:
    generator = torch.Generator().manual_seed(config.seed)
    loaders = {}
    for name, examples in (("train", split.train), ("val", split.val), ("test", split.test)):
        if examples:
            tokens = train_tokens if name == "train" else None
            loaders[name] = DataLoader(
                EncodedTexts(examples, split.labels, encoder, tokens),
                batch_size=config.batch_size,
                shuffle=name == "train",
                collate_fn=collate_padded,
                generator=generator,
            )
    return loaders


@dataclass
class _Run:
    """Everything one training run works with, built by `_prepare`."""

    config: TextTrainConfig
    model: TextClassifier
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loaders: dict[str, DataLoader[Any]]
    vocabulary: Vocabulary
    state: _State
    device: torch.device

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)


def fit_text(config: TextTrainConfig) -> TextFitResult:
    """Train per `config`; the best epoch's weights end up in best.pt (and in the model)."""
    run = _prepare(config)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    save_json(config.to_json(), run.out_dir / "config.json")
    while run.state.epoch < config.epochs:
        if config.patience and run.state.stale_epochs >= config.patience:
            log.info("early stop: no better validation accuracy for %d epochs", config.patience)
            break
        _run_epoch(run)
    return _finish(run)


def _prepare(config: TextTrainConfig) -> _Run:
    """Data, vocabulary (rebuilt, or the resumed run's), model, optimizer, schedule, state."""
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    val_data = Path(config.val_data) if config.val_data else None
    split = load_text_split(
        Path(config.data),
        val_data,
        config.labels,
        config.val_fraction,
        config.seed,
        config.text_column,
        config.label_column,
    )
    config.labels = split.labels
    resumed = ckpt.load_raw(Path(config.resume)) if config.resume else None
    # Tokenized once: for the vocabulary and for the training ids.
    train_tokens = [tokenize(e.text) for e in split.train]
    vocabulary = (
        Vocabulary(resumed["vocabulary"]) if resumed else build_vocabulary(train_tokens, config)
    )
    loaders = _loaders(split, TextEncoder(vocabulary, config.max_length), config, train_tokens)
    model = build_model(config, vocabulary, len(split.labels)).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * len(loaders["train"])
    scheduler = warmup_cosine(optimizer, steps, config.warmup_fraction)
    state = _restore(resumed, model, optimizer, scheduler) if resumed else _State()
    log.info(
        "training a %s on %s: labels %s, %d train / %d val texts, vocabulary %d, device %s",
        config.cell,
        config.data,
        split.labels,
        len(split.train),
        len(split.val),
        len(vocabulary),
        device,
    )
    return _Run(config, model, optimizer, scheduler, loaders, vocabulary, state, device)


def _run_epoch(run: _Run) -> None:
    """Train one epoch, validate, log, checkpoint."""
    config, state = run.config, run.state
    state.epoch += 1
    started = time.monotonic()
    description = f"epoch {state.epoch}/{config.epochs}"
    train_loss, train_acc = train_epoch(
        run.model,
        run.loaders["train"],
        run.optimizer,
        run.scheduler,
        run.device,
        config.grad_clip,
        description,
    )
    val_loss, report = evaluate_report(run.model, run.loaders["val"], config.labels, run.device)
    record = {
        "epoch": state.epoch,
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        "val_loss": val_loss,
        "val_accuracy": report["accuracy"],
        "val_f1_macro": report["macro"]["f1"],
        "lr": run.scheduler.get_last_lr()[0],
    }
    state.history.append(record)
    log.info(
        "%s  train loss %.4f acc %.3f  val loss %.4f acc %.3f  (%.1fs)",
        description,
        train_loss,
        train_acc,
        val_loss,
        report["accuracy"],
        time.monotonic() - started,
    )
    _checkpoint(run, record)


def _checkpoint(run: _Run, record: dict[str, float]) -> None:
    """last.pt every epoch (for --resume); best.pt when validation accuracy improved."""
    state = run.state
    improved = record["val_accuracy"] > state.best_accuracy
    state.best_accuracy = max(state.best_accuracy, record["val_accuracy"])
    state.stale_epochs = 0 if improved else state.stale_epochs + 1
    args = (run.model, run.config, run.vocabulary, state, record)
    if improved:
        save_checkpoint(run.out_dir / "best.pt", *args)
    save_checkpoint(run.out_dir / "last.pt", *args, run.optimizer, run.scheduler)


def _finish(run: _Run) -> TextFitResult:
    """Restore the best weights, then report on validation (and test) and draw the plots."""
    config, out_dir = run.config, run.out_dir
    best = ckpt.load_raw(out_dir / "best.pt")
    run.model.load_state_dict(best["model"])
    reports = {
        name: evaluate_report(run.model, loader, config.labels, run.device)[1]
        for name, loader in run.loaders.items()
        if name != "train"
    }
    report, test_report = reports["val"], reports.get("test")
    metrics = {
        "history": run.state.history,
        "best_epoch": best["epoch"],
        "val": report,
        "test": test_report,
    }
    save_json(metrics, out_dir / "metrics.json")
    if config.plots:
        plot_training_curves(run.state.history, out_dir / "curves.png")
        plot_confusion_matrix(
            np.asarray(report["confusion_matrix"]), config.labels, out_dir / "confusion.png"
        )
    binary = report.get("binary")
    auc = f", ROC-AUC {binary['roc_auc']:.4f}" if binary else ""
    log.info(
        "best epoch %d: val accuracy %.4f, macro F1 %.4f%s",
        best["epoch"],
        report["accuracy"],
        report["macro"]["f1"],
        auc,
    )
    return TextFitResult(
        out_dir / "best.pt", report["accuracy"], report, run.state.history, test_report
    )


def save_checkpoint(
    path: Path,
    model: TextClassifier,
    config: TextTrainConfig,
    vocabulary: Vocabulary,
    state: _State,
    metrics: dict[str, float],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> None:
    """Everything export needs travels in the checkpoint: labels, vocabulary, tokenizer, sizes."""
    ckpt.save_checkpoint(
        path,
        {
            "task": "text",
            "model": model.state_dict(),
            "model_config": asdict(model.config),
            "optimizer": optimizer.state_dict() if optimizer else None,
            "scheduler": scheduler.state_dict() if scheduler else None,
            "epoch": state.epoch,
            "state": {
                "best_accuracy": state.best_accuracy,
                "stale_epochs": state.stale_epochs,
                "history": state.history,
            },
            "config": config.to_json(),
            "metrics": metrics,
            "labels": list(config.labels),
            "vocabulary": vocabulary.tokens,
            "max_length": config.max_length,
            "tokenizer": TOKENIZER_NAME,
        },
    )


def _restore(
    checkpoint: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> _State:
    if checkpoint.get("optimizer") is None:
        raise ValueError("--resume needs last.pt (best.pt holds no optimizer state)")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    saved = checkpoint["state"]
    log.info("resuming after epoch %d", checkpoint["epoch"])
    return _State(
        checkpoint["epoch"], saved["best_accuracy"], saved["stale_epochs"], list(saved["history"])
    )
