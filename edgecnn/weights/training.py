"""`make train-demo` / `make train-zoo`: the project's own trained models, one per family, on Fashion-MNIST.

They give the harness real trained networks whose int8 cost can be measured on 10,000 labelled test
images. The recipes are data (`edgecnn.weights.recipes`); a run writes the checkpoint (torchvision
layout, fp32 state_dict) and a record of the run (recipe, seed, per-epoch accuracy, machine, time) into
`edgecnn/weights/checkpoints/`, each file written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgecnn.data.datasets import FASHION_MNIST
from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import UsageError
from edgecnn.weights.recipes import RECIPES, Recipe
from edgecnn.zoo.models.layers import RawRGBInput
from edgecnn.zoo.registry import create_model, get_model_info


def augment(batch: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 3, R, R) float raw pixels -> random crops of the zero-padded images, half of them mirrored."""
    n, _, size, _ = batch.shape
    padded = F.pad(batch, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    crops = torch.stack([padded[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(offsets.tolist())])
    flip = torch.rand(n, generator=generator) < 0.5
    crops[flip] = crops[flip].flip(-1)
    return crops


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size].float())
            correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def as_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def build_network(recipe: Recipe) -> tuple[torch.nn.Module, tuple[float, ...], tuple[float, ...]]:
    """The untrained network and the normalisation it is trained behind: the zoo's, or `--model MODULE:ATTR`'s
    (built as export builds it, with ImageNet's mean and std, export's default)."""
    if recipe.third_party:
        from edgecnn.weights import user_model

        network = user_model.rebuild(recipe.model, recipe.model_args)
        if user_model.output_width(network, recipe.resolution) != recipe.num_classes:
            raise UsageError(f"{recipe.model} {recipe.model_args} does not have {recipe.num_classes} outputs")
        return network, user_model.IMAGENET_MEAN, user_model.IMAGENET_STD
    info = get_model_info(recipe.model)
    return create_model(recipe.model, alpha=recipe.alpha, num_classes=recipe.num_classes), info.mean, info.std


def learning_rate(recipe: Recipe, step: int, total: int) -> float:
    warmup = max(1, int(total * recipe.warmup_fraction))
    if step < warmup:
        return recipe.peak_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return recipe.peak_lr * 0.5 * (1.0 + np.cos(np.pi * progress))


def train(recipe: Recipe, out_dir: Path) -> dict:
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    train_images, train_labels = FASHION_MNIST.model_inputs("train", recipe.resolution)
    test_images, test_labels = FASHION_MNIST.model_inputs("test", recipe.resolution)
    train_x, test_x = as_nchw(train_images), as_nchw(test_images)
    train_y, test_y = torch.from_numpy(train_labels), torch.from_numpy(test_labels)

    net, mean, std = build_network(recipe)
    model = RawRGBInput(net, mean, std)  # trained on raw 0..255 pixels, as every export takes them
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # no weight decay on BatchNorm and biases
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.peak_lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = len(train_x) // recipe.batch_size  # the last partial batch is dropped
    total = steps_per_epoch * recipe.epochs
    history = []
    step = 0
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        running, t0 = 0.0, time.perf_counter()
        for i in range(steps_per_epoch):
            index = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step, total)
            batch = augment(train_x[index].float(), recipe.pad, generator)
            loss = F.cross_entropy(model(batch), train_y[index], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
            step += 1
            if (i + 1) % 50 == 0 or i + 1 == steps_per_epoch:
                print(
                    f"  epoch {epoch + 1}/{recipe.epochs} step {i + 1}/{steps_per_epoch} "
                    f"loss {running / (i + 1):.4f} ({time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        accuracy = evaluate(model, test_x, test_y)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": running / steps_per_epoch,
                "test_top1": accuracy,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(f"[edgecnn] epoch {epoch + 1}/{recipe.epochs}: test top-1 {accuracy:.2%}", file=sys.stderr, flush=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / recipe.checkpoint
    replace_file(checkpoint, lambda path: torch.save(net.state_dict(), path))
    record = {
        "schema": "edgecnn.training/1",
        "recipe": asdict(recipe),
        "checkpoint": checkpoint.name,
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "parameters": sum(p.numel() for p in net.parameters()),
        "data": {
            "name": FASHION_MNIST.name,
            "source": f"Debian package {FASHION_MNIST.apt_package} (MIT)",
            "train_images": len(train_x),
            "test_images": len(test_x),
            "preprocessing": f"28x28 gray as RGB, whole frame (crop fraction {FASHION_MNIST.crop_fraction:g}) "
            f"resized to {recipe.resolution}x{recipe.resolution} by edgecnn's rule",
        },
        "pytorch_test_top1": history[-1]["test_top1"],
        "history": history,
        "seconds": time.perf_counter() - started,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    replace_file(
        out_dir / f"{recipe.stem}.training.json", lambda path: path.write_text(json.dumps(record, indent=1) + "\n")
    )
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecnn.weights.training", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        default="fashion-mnist-demo",
        choices=sorted(RECIPES),
        help="the recipe, by the --weights name its checkpoint is exported with",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("checkpoints"))
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (a shorter trial run)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, every core)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1 or args.threads is not None and args.threads < 1:
        print("edgecnn: error: --epochs and --threads must be at least 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.weights]
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)
    try:
        record = train(recipe, args.out)
    except UsageError as err:
        print(f"edgecnn: error: {err}", file=sys.stderr)
        return 2
    print(
        f"[edgecnn] {record['checkpoint']}: test top-1 {record['pytorch_test_top1']:.2%} "
        f"after {record['seconds'] / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
