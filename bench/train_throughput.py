"""Training throughput: `onyx.train.engine.loop.train_one_epoch` vs a bare torch loop.

    python bench/train_throughput.py --model resnet18 --image-size 64 --batch-size 32
    python bench/train_throughput.py --model small_cnn --image-size 32 --device cuda

Both run the same model, optimizer, batch size and in-memory data (a TensorDataset, so image
decoding is not measured), alternating epoch by epoch from the same starting weights; the figure
is the ratio of their median images/s, measured side by side in one run (absolute numbers on a
shared machine move with whatever else runs). The engine's epoch includes what real training
pays: frozen-BatchNorm handling, the LR scheduler, the progress bar and loss/accuracy sums.
Target: >= 0.9x.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onyx.train.engine.loop import StepOptions, train_one_epoch
from onyx.train.tasks.image.models import get_model


def bare_epoch(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> None:
    model.train()
    criterion = nn.CrossEntropyLoss()
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def engine_epoch(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    options = StepOptions(criterion=nn.CrossEntropyLoss(), scheduler=scheduler)
    train_one_epoch(model, loader, optimizer, device, options, "bench")
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=512, help="Images per epoch.")
    parser.add_argument("--rounds", type=int, default=5, help="Timed epochs per loop.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: default)."
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    images = torch.randn(args.images, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 10, (args.images,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=args.batch_size, shuffle=True)
    start = get_model(args.model, 10).to(device)
    runs = {}
    for name in ("bare", "engine"):
        model = copy.deepcopy(start)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        runs[name] = (model, optimizer, scheduler)
    times: dict[str, list[float]] = {"bare": [], "engine": []}
    for round_ in range(args.rounds + 1):  # round 0 warms up both
        for name, (model, optimizer, scheduler) in runs.items():
            began = time.perf_counter()
            if name == "bare":
                bare_epoch(model, loader, optimizer, device)
            else:
                engine_epoch(model, loader, optimizer, device, scheduler)
            if round_:
                times[name].append(time.perf_counter() - began)
    rate = {name: args.images / statistics.median(t) for name, t in times.items()}
    print(
        f"{args.model} {args.image_size}px batch {args.batch_size} on {device} "
        f"(threads {torch.get_num_threads()}), {args.images} images x {args.rounds} epochs"
    )
    for name, value in rate.items():
        print(f"  {name:<7} {value:8.1f} images/s   epochs {[round(t, 3) for t in times[name]]}")
    print(f"  engine / bare = {rate['engine'] / rate['bare']:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
