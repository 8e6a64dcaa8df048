"""The one engine on both tasks: fit() learns, keeps the best epoch, stops early, resumes
exactly, is deterministic, survives Ctrl-C; the transfer schedule freezes what it should; the
AMP policy and the step; text runs get the same machinery (reports, frozen vectors, schedule)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from onyx.train.config import AugmentConfig, ImageTrainConfig, TextTrainConfig
from onyx.train.engine import loop as engine
from onyx.train.engine.checkpoint import load_checkpoint
from onyx.train.engine.loop import fit
from onyx.train.engine.metrics import classification_report, confusion_matrix, roc_auc
from onyx.train.engine.schedule import build_scheduler, lr_factor, train_mode
from onyx.train.export import load_model
from onyx.train.tasks.image.models import get_model
from onyx.train.tasks.image.transfer import set_trainable
from onyx.train.tasks.registry import task_for
from onyx.train.tasks.text.models import TextClassifier, TextModelConfig


def small_config(data: Path, out: Path, **overrides: Any) -> ImageTrainConfig:
    base = ImageTrainConfig(
        data=str(data),
        out_dir=str(out),
        model="small_cnn",
        weights="none",
        image_size=32,
        epochs=4,
        batch_size=16,
        lr=5e-3,
        warmup_fraction=0.2,
        augment=AugmentConfig(
            crop_scale_min=0.8,
            hflip=True,
            rotation_degrees=0.0,
            translate_fraction=0.0,
            color_jitter=0.0,
        ),
    )
    return replace(base, **overrides)


def test_learns_a_synthetic_task_and_keeps_the_best_epoch(shapes_dir: Path, tmp_path: Path) -> None:
    result = fit(task_for(small_config(shapes_dir, tmp_path / "run")))
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.7, losses
    assert result.best_accuracy >= 0.9, result.history
    best = load_checkpoint(result.best_checkpoint)
    assert best["metrics"]["val_accuracy"] == result.best_accuracy
    assert {"model", "optimizer", "scheduler", "epoch", "config", "metrics"} <= set(best)
    for name in ("config.json", "split.json", "metrics.json", "curves.png", "last.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    model, _ = load_model(result.best_checkpoint)  # rebuilt from the name alone
    assert sum(p.numel() for p in model.parameters()) > 0


def test_same_seed_same_weights_on_cpu(shapes_dir: Path, tmp_path: Path) -> None:
    first = fit(task_for(small_config(shapes_dir, tmp_path / "a", epochs=1, max_steps=3)))
    second = fit(task_for(small_config(shapes_dir, tmp_path / "b", epochs=1, max_steps=3)))
    other = fit(task_for(small_config(shapes_dir, tmp_path / "c", epochs=1, max_steps=3, seed=1)))
    a, b, c = (load_checkpoint(r.last_checkpoint)["model"] for r in (first, second, other))  # type: ignore[arg-type]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_restores_the_best_weights(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([0.5, 0.7, 0.6, 0.6, 0.9, 0.9])  # best at epoch 2, then 2 worse epochs
    real_evaluate = engine.evaluate

    def fake_evaluate(*args: Any) -> engine.EpochStats:
        stats = real_evaluate(*args)
        return engine.EpochStats(stats.loss, next(scripted))

    monkeypatch.setattr(engine, "evaluate", fake_evaluate)
    result = fit(
        task_for(small_config(shapes_dir, tmp_path / "run", epochs=6, patience=2, max_steps=2))
    )
    assert result.stopped_early
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.best_accuracy == 0.7
    best = load_checkpoint(result.best_checkpoint)
    assert best["epoch"] == 2
    assert result.model is not None
    restored = result.model.state_dict()
    assert all(torch.equal(restored[k], best["model"][k]) for k in restored)


def test_ctrl_c_saves_last_and_resume_continues_exactly(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = engine.train_one_epoch

    def interrupted(*args: Any, **kwargs: Any) -> engine.EpochStats:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted)
    config = small_config(shapes_dir, tmp_path / "run", epochs=2, max_steps=2)
    result = fit(task_for(config))  # Ctrl-C as epoch 2 starts
    assert result.interrupted
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 1
    monkeypatch.setattr(engine, "train_one_epoch", real)
    resumed = fit(task_for(replace(config, resume=str(tmp_path / "run" / "last.pt"))))
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    straight = fit(task_for(replace(config, out_dir=str(tmp_path / "straight"))))
    a = load_checkpoint(straight.last_checkpoint)["model"]  # type: ignore[arg-type]
    b = load_checkpoint(resumed.last_checkpoint)["model"]  # type: ignore[arg-type]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_options_sgd_step_schedule_smoothing_weights_clipping(
    shapes_dir: Path, tmp_path: Path
) -> None:
    result = fit(
        task_for(
            small_config(
                shapes_dir,
                tmp_path / "run",
                epochs=2,
                max_steps=3,
                optimizer="sgd",
                schedule="step",
                label_smoothing=0.1,
                class_weights="balanced",
                clip_grad_norm=1.0,
                lr=0.05,
            )
        )
    )
    assert len(result.history) == 2
    assert all(h["train_loss"] == h["train_loss"] for h in result.history)  # not NaN


def test_transfer_schedule_freezes_then_unfreezes_last_stages() -> None:
    config = ImageTrainConfig(
        data=Path(), model="resnet18", weights="imagenet", freeze_epochs=1, unfreeze=2
    )
    model = get_model("resnet18", 3)
    set_trainable(config, model, epoch=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    train_mode(model)
    assert not model.layer4[0].bn1.training  # frozen BN keeps its ImageNet statistics
    set_trainable(config, model, epoch=2)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc", "layer3", "layer4"}
    train_mode(model)
    # Pretrained BatchNorm keeps its statistics even when unfrozen (default)...
    assert not model.layer4[0].bn1.training and not model.bn1.training
    # ...unless asked to train them: then only the unfrozen stages do.
    config.train_batchnorm = True
    set_trainable(config, model, epoch=2)
    train_mode(model)
    assert model.layer4[0].bn1.training and not model.bn1.training


def test_warmup_then_cosine() -> None:
    factors = [lr_factor(s, 10, 2, "cosine") for s in range(10)]
    assert factors[0] == 0.5 and factors[1] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(factors[1:]))
    assert lr_factor(9, 10, 0, "step") == pytest.approx(0.01)


def test_fine_tune_lite0_freezes_then_trains_last_stages_at_a_lower_rate(tmp_path: Path) -> None:
    """Epoch 1: only the head moves and frozen BatchNorm statistics stay ImageNet's. Epoch 2: the
    last 2 stages train too, at lr x backbone_lr_scale; earlier stages never change."""
    from tests.train.conftest import write_shapes

    data = write_shapes(tmp_path / "data", 8, classes=("a", "b"))
    pretrained = get_model("efficientnet_lite0", 2, weights="imagenet").state_dict()
    config = ImageTrainConfig(
        data=str(data),
        out_dir=str(tmp_path / "run"),
        model="efficientnet_lite0",
        weights="imagenet",
        image_size=32,
        epochs=1,
        batch_size=8,
        max_steps=2,
        lr=1e-2,
        freeze_epochs=1,
        unfreeze=2,
        backbone_lr_scale=0.1,
        augment=AugmentConfig.off(),
    )
    fit(task_for(config))
    after_head = load_checkpoint(tmp_path / "run" / "last.pt")
    changed = {
        k
        for k, v in after_head["model"].items()
        if k in pretrained and not k.startswith("classifier") and not torch.equal(v, pretrained[k])
    }
    assert changed == set()  # weights and BatchNorm running stats untouched
    head = after_head["model"]["classifier.weight"]
    assert not torch.equal(head, pretrained["classifier.weight"])
    fit(task_for(replace(config, epochs=2, resume=str(tmp_path / "run" / "last.pt"))))
    after = load_checkpoint(tmp_path / "run" / "last.pt")
    moved = {
        k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks") else "")
        for k, v in after["model"].items()
        if not torch.equal(v, after_head["model"][k])
    }
    # Stages: stem, blocks.0..6, head conv; the last 2 are blocks.6 and conv_head/bn2.
    assert moved == {"blocks.6", "conv_head", "bn2", "classifier"}
    groups = {g["name"]: g["initial_lr"] for g in after["optimizer"]["param_groups"]}
    assert groups == {"head": 1e-2, "backbone": pytest.approx(1e-3)}


def test_resume_refuses_a_checkpoint_of_another_architecture(
    shapes_dir: Path, tmp_path: Path
) -> None:
    config = small_config(shapes_dir, tmp_path / "run", epochs=1, max_steps=1)
    fit(task_for(config))
    with pytest.raises(ValueError, match="is a small_cnn checkpoint, not resnet18"):
        fit(task_for(replace(config, model="resnet18", resume=str(tmp_path / "run" / "last.pt"))))


def test_mixed_precision_step_scales_unscales_clips_and_steps() -> None:
    """The CUDA AMP path (float16 autocast, loss scaling, unscale before clipping), run with
    CPU's GradScaler since these machines have no GPU."""
    torch.manual_seed(0)
    model = get_model("small_cnn", 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), 1e-2)
    options = engine.StepOptions(
        scaler=torch.amp.GradScaler("cpu"), autocast_dtype=torch.bfloat16, clip_grad_norm=1.0
    )
    images, targets = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    logits, loss = engine._step(model, images, targets, optimizer, options)
    assert logits.shape == (4, 3) and torch.isfinite(loss.detach())
    after = model.state_dict()
    assert not torch.equal(after["features.0.0.weight"], before["features.0.0.weight"])


# --- text ----------------------------------------------------------------------------------

WORDS = {"red": "crimson scarlet ruby", "green": "emerald lime olive", "blue": "navy azure cobalt"}


def write_imdb_style(root: Path, per_label: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, words in WORDS.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_label):
                picked = rng.choice(words.split(), size=3)
                (folder / f"{i}.txt").write_text(
                    " ".join(picked) + "<br />the end", encoding="utf-8"
                )
    return root


def test_multiclass_folders_report_validation_and_test(tmp_path: Path) -> None:
    data = write_imdb_style(tmp_path / "data")
    config = TextTrainConfig(
        data=data,
        out_dir=tmp_path / "run",
        embed_dim=8,
        hidden=8,
        epochs=2,
        batch_size=8,
        device="cpu",
    )
    result = fit(task_for(config))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val"]["confusion_matrix"] and len(metrics["val"]["confusion_matrix"]) == 3
    assert "binary" not in metrics["val"]  # ROC-AUC and positive-class figures: binary only
    assert metrics["test"]["confusion_matrix"] and np.sum(metrics["test"]["confusion_matrix"]) == 36
    checkpoint = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["labels"] == ["blue", "green", "red"]
    assert checkpoint["task"] == "text"
    assert "crimson" in checkpoint["vocabulary"]


def test_frozen_word_vectors_stay_frozen(tmp_path: Path) -> None:
    data = write_imdb_style(tmp_path / "data")
    vectors = tmp_path / "vectors.txt"
    lines = [f"{w} {i}.0 {i + 1}.0" for i, w in enumerate(" ".join(WORDS.values()).split())]
    vectors.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = TextTrainConfig(
        data=data,
        out_dir=tmp_path / "run",
        embed_dim=2,
        hidden=4,
        epochs=1,
        vectors=str(vectors),
        freeze_vectors=True,
        device="cpu",
        plots=False,
    )
    result = fit(task_for(config))
    checkpoint = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    row = checkpoint["vocabulary"].index("crimson")
    assert checkpoint["model"]["embedding.weight"][row].tolist() == [0.0, 1.0]


def test_warmup_fraction_then_cosine_to_zero() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    config = TextTrainConfig(data=Path(), epochs=10, warmup_fraction=0.1)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=10)
    rates = []
    for _ in range(100):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0.1 and rates[9] == 1.0  # linear warm-up over 10 steps
    assert rates[10] > rates[50] > rates[99] >= 0 and rates[99] < 0.01


def test_metrics_match_hand_computed_values() -> None:
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    report = classification_report(y_true, np.eye(3)[y_pred], ["a", "b", "c"])
    assert report["accuracy"] == 4 / 6
    assert report["per_class"]["b"] == {
        "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3,
    }  # fmt: skip
    # AUC: 3 of 4 positive/negative pairs ordered right, one tie counted half.
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.5, 0.5, 0.9])) == 0.875


# --- AMP ------------------------------------------------------------------------------------


def test_amp_is_chosen_only_on_cuda_and_scales_only_float16() -> None:
    config = TextTrainConfig(data=Path())
    assert engine.amp_policy(config, torch.device("cpu")) == engine.AmpPolicy(None, False)
    cuda = torch.device("cuda")  # a device object only: nothing runs on it here
    assert engine.amp_policy(config, cuda) == engine.AmpPolicy(torch.float16, True)
    bf16 = TextTrainConfig(data=Path(), amp_dtype="bfloat16")
    assert engine.amp_policy(bf16, cuda) == engine.AmpPolicy(torch.bfloat16, False)
    assert engine.amp_policy(replace(config, amp=False), cuda) == engine.AmpPolicy()


def test_text_step_without_amp_on_cpu_learns() -> None:
    torch.manual_seed(0)
    model = TextClassifier(TextModelConfig(vocab_size=20, num_classes=2, embed_dim=4, hidden=4))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-2)
    options = engine.StepOptions(clip_grad_norm=1.0)  # CPU: no scaler, no autocast
    ids = torch.tensor([[2, 3, 4, 0], [5, 6, 0, 0]])
    targets = torch.tensor([0, 1])
    before = model.embedding.weight.detach().clone()
    losses = [
        float(engine._step(model, ids, targets, optimizer, options)[1].detach()) for _ in range(20)
    ]
    assert losses[-1] < losses[0]
    assert not torch.equal(model.embedding.weight, before)


def test_text_run_on_cpu_has_no_scaler_and_full_precision(tmp_path: Path) -> None:
    data = write_imdb_style(tmp_path / "data", per_label=4)
    result = fit(task_for(TextTrainConfig(data=data, out_dir=tmp_path / "run", embed_dim=4,
                                          hidden=4, epochs=1, device="cpu", plots=False,
                                          amp=True)))  # fmt: skip
    last = load_checkpoint(result.last_checkpoint)  # type: ignore[arg-type]
    assert last["scaler"] is None and last["config"]["amp"] is True
    assert all(v.dtype == torch.float32 for v in last["model"].values())


def test_text_ctrl_c_before_any_epoch_leaves_the_start_state_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = engine.train_one_epoch

    def interrupted(*args: Any, **kwargs: Any) -> engine.EpochStats:
        real(*args, **kwargs)  # the weights move, then Ctrl-C before the epoch ends
        raise KeyboardInterrupt

    data = write_imdb_style(tmp_path / "data", per_label=4)
    config = TextTrainConfig(data=data, out_dir=tmp_path / "run", embed_dim=4, hidden=4,
                             epochs=2, device="cpu", plots=False)  # fmt: skip
    monkeypatch.setattr(engine, "train_one_epoch", interrupted)
    result = fit(task_for(config))
    assert result.interrupted and result.history == []
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 0
    monkeypatch.setattr(engine, "train_one_epoch", real)
    resumed = fit(task_for(replace(config, resume=str(tmp_path / "run" / "last.pt"))))
    straight = fit(task_for(replace(config, out_dir=tmp_path / "straight")))
    a = load_checkpoint(resumed.last_checkpoint)["model"]  # type: ignore[arg-type]
    b = load_checkpoint(straight.last_checkpoint)["model"]  # type: ignore[arg-type]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _tiny_text_config(tmp_path: Path) -> TextTrainConfig:
    data = write_imdb_style(tmp_path / "data", per_label=4)
    return TextTrainConfig(
        data=data, out_dir=tmp_path / "a", embed_dim=4, hidden=4, epochs=1, device="cpu",
        plots=False,
    )  # fmt: skip


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_in_the_first_epoch_after_a_resume_keeps_the_resumed_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The optimizer adopts the loaded tensors and steps them in place: the saved start state
    # must be a copy, or last.pt gets half an epoch of optimizer state under the old weights.
    config = _tiny_text_config(tmp_path)
    fit(task_for(config))
    original = tmp_path / "original.pt"
    original.write_bytes((tmp_path / "a" / "last.pt").read_bytes())
    real = engine.train_one_epoch

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "train_one_epoch", interrupted)
    stopped = fit(task_for(replace(config, epochs=3, out_dir=tmp_path / "b", resume=str(original))))
    assert stopped.interrupted
    monkeypatch.setattr(engine, "train_one_epoch", real)
    before, after = load_checkpoint(original), load_checkpoint(tmp_path / "b" / "last.pt")
    assert after["epoch"] == before["epoch"]
    assert _same_weights(after["model"], before["model"])
    for param, state in before["optimizer"]["state"].items():
        assert _same_weights(after["optimizer"]["state"][param], state), param
    again = fit(
        task_for(
            replace(config, epochs=3, out_dir=tmp_path / "c", resume=str(tmp_path / "b/last.pt"))
        )
    )
    straight = fit(
        task_for(replace(config, epochs=3, out_dir=tmp_path / "d", resume=str(original)))
    )
    assert again.model is not None and straight.model is not None
    assert _same_weights(again.model.state_dict(), straight.model.state_dict())


def test_resuming_into_another_out_dir_ends_on_the_best_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _tiny_text_config(tmp_path)
    first = fit(task_for(config))
    best = load_checkpoint(first.best_checkpoint)
    # Later epochs never beat the checkpoint's best: the run must still end on its weights.
    monkeypatch.setattr(engine, "evaluate", lambda *_: engine.EpochStats(1.0, -1.0))
    resumed = fit(
        task_for(
            replace(config, epochs=2, out_dir=tmp_path / "b", resume=str(first.last_checkpoint))
        )
    )
    assert resumed.best_checkpoint.is_file()
    assert resumed.model is not None and resumed.report is not None
    assert _same_weights(resumed.model.state_dict(), best["model"])
    assert (tmp_path / "b" / "metrics.json").is_file()


def test_text_resume_refuses_another_architecture(tmp_path: Path) -> None:
    config = _tiny_text_config(tmp_path)
    first = fit(task_for(config))
    for change in ({"pooling": "max"}, {"hidden": 8}):
        other = replace(config, epochs=2, out_dir=tmp_path / "b", resume=str(first.last_checkpoint))
        with pytest.raises(ValueError, match="another architecture"):
            fit(task_for(replace(other, **change)))


@pytest.mark.parametrize(
    ("field", "value"), [("epochs", 0), ("lr", 0.0), ("dropout", 1.0), ("val_fraction", 1.0)]
)
def test_configs_refuse_values_outside_their_range(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        TextTrainConfig(data=Path("x"), **{field: value})  # type: ignore[arg-type]
