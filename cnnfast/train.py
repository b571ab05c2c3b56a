"""Train a tutorial model (LeNet, the MNIST CNN, the CIFAR-10 ResNet) on cnnfast's layers.

Each epoch: a pass over the training split with a progress bar (loss, images/s), evaluation on the
held-out split, a checkpoint ``OUT/checkpoint.pt`` (model and optimizer state, epoch; resume with
``--resume``) and a line of ``OUT/metrics.jsonl``; at the end the curves in ``OUT/curves.png``. Under ``torchrun --nproc_per_node N`` the model
is wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU), ``--batch-size`` is per process
and each rank trains on its share of every global batch.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from . import distributed as dist_util
from ._argtypes import positive_float, positive_int

CHECKPOINT_FORMAT = "cnnfast-train-checkpoint/1"

# Defaults chosen on the digits data set (see README, "Tutorial workflows").
DEFAULTS = {"epochs": 15, "batch_size": 32, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}


def add_arguments(parser):
    from .models import MODELS  # noqa: PLC0415

    parser.add_argument("model", choices=list(MODELS), help="model to train")
    parser.add_argument("--data", default="digits", choices=["digits", "mnist", "cifar10"],
                        help="data set (default: digits, scikit-learn's handwritten digits, no network needed)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder holding MNIST / CIFAR-10 in torchvision's on-disk layout")
    parser.add_argument("--download", action="store_true", help="download MNIST / CIFAR-10 into --data-dir first")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"], help="default: %(default)s")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"],
                        help="batch size per process (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"],
                        help="SGD learning rate, cosine-annealed over --epochs, which on --resume is "
                             "the new total (default: %(default)s)")
    parser.add_argument("--momentum", type=float, default=DEFAULTS["momentum"], help="default: %(default)s")
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"], help="default: %(default)s")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                        help="use cnnfast's layers (default) or plain torch layers (--no-fast)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialization and data order (default: 0)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/MODEL)")
    parser.add_argument("--resume", default=None, metavar="CKPT", help="continue from this checkpoint")
    parser.add_argument("--blocks-per-stage", type=positive_int, default=3,
                        help="resnet-cifar only: residual blocks per stage (3: ResNet-20)")
    parser.add_argument("--subset", type=positive_int, default=None, metavar="N",
                        help="use only the first N images of each split (quick trials)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="random shifts of up to 2 pixels (and left-right mirroring for cifar10) (default: on)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def model_kwargs(name, blocks_per_stage=3):
    return {"blocks_per_stage": blocks_per_stage} if name == "resnet-cifar" else {}


def cosine_lr(base_lr, epoch, epochs):
    """The learning rate of ``epoch`` (1-based) of ``epochs``: cosine annealing from ``base_lr``
    (epoch 1) towards 0, ``base_lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2``."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


def make_optimizer(model, lr, momentum=DEFAULTS["momentum"], weight_decay=DEFAULTS["weight_decay"]):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def augment(images, shifts, flips=None):
    """Translate each image by its ``shifts[i] = (dy, dx)`` pixels (edges replicated, size kept) and
    mirror it left-right where ``flips[i]``."""
    s = int(shifts.abs().max()) if len(shifts) else 0
    if s:
        n, c, h, w = images.shape
        padded = F.pad(images, (s, s, s, s), mode="replicate")
        rows = (torch.arange(h) + s).view(1, h) - shifts[:, :1]  # (N, H): source row of each output row
        cols = (torch.arange(w) + s).view(1, w) - shifts[:, 1:]  # (N, W)
        images = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1),
                        rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    if flips is not None and bool(flips.any()):
        images = torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)
    return images


def train_epoch(model, optimizer, split, batch_size, ctx, generator, progress=None, on_step=None,
                max_shift=0, flip=False):
    """One pass over ``split`` (this rank's share of each global batch). Returns the mean training
    loss and accuracy over the images this rank saw, that count, and the seconds taken.
    ``on_step(loss)`` is called with each step's loss (a float). With ``max_shift`` each image is
    translated by up to that many pixels (and mirrored at random with ``flip``); the draws are made
    per image of the data set, so they do not depend on how the batches are shared between ranks."""
    model.train()
    batches = dist_util.shard_batches(len(split), batch_size, ctx, generator=generator)
    n = len(split)
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator) if max_shift else None
    flips = torch.rand(n, generator=generator) < 0.5 if flip else None
    loss_sum, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    for idx in batches:
        x, y = split.images[idx], split.labels[idx]
        if shifts is not None or flips is not None:
            x = augment(x, shifts[idx] if shifts is not None else torch.zeros(len(idx), 2, dtype=torch.long),
                        flips[idx] if flips is not None else None)
        x, y = x.to(ctx.device), y.to(ctx.device)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        lv = loss.item()
        loss_sum += lv * len(y)
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
        if on_step is not None:
            on_step(lv)
        if progress is not None:
            progress.update(1)
            rate = seen * ctx.world_size / max(time.perf_counter() - t0, 1e-9)
            progress.set_postfix_str(f"loss {lv:.4f}, {rate:,.0f} img/s", refresh=False)
    return loss_sum / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - t0


@torch.no_grad()
def evaluate(model, split, ctx, batch_size=500):
    """Loss and accuracy on the whole of ``split`` (each rank evaluates every world_size-th image and
    the sums are all-reduced)."""
    model.eval()
    idx = torch.arange(ctx.rank, len(split), ctx.world_size)
    totals = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(idx), batch_size):
        b = idx[i:i + batch_size]
        x, y = split.images[b].to(ctx.device), split.labels[b].to(ctx.device)
        out = model(x)
        totals[0] += F.cross_entropy(out, y, reduction="sum").item()
        totals[1] += int((out.argmax(1) == y).sum())
        totals[2] += len(b)
    dist_util.all_reduce_sum(ctx, totals)
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


def load_checkpoint(path, map_location="cpu"):
    """A checkpoint written by ``cnnfast train``; a clear error when it is missing or not one."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a cnnfast train checkpoint (no format {CHECKPOINT_FORMAT!r})")
    return ckpt


def _save(obj, path):
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint


def train(args):
    """The training run described by the parsed ``args``; returns the last epoch's metrics."""
    from . import data as data_mod  # noqa: PLC0415
    from .models import get_model  # noqa: PLC0415

    ctx = dist_util.setup(args.device)
    try:
        # The run's model (DistributedDataParallel, its reducer and gloo work) lives in _run's frame,
        # so it is gone before the process group is destroyed, not torn down at interpreter exit; and
        # every rank waits for the others to be done with the group before it is destroyed.
        last = _run(args, ctx, data_mod, get_model)
        dist_util.barrier(ctx)
        return last
    finally:
        dist_util.cleanup(ctx)


def _run(args, ctx, data_mod, get_model):
    out_dir = args.out or os.path.join("runs", args.model)
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(args.resume, map_location=ctx.device)
        if ckpt["model_name"] != args.model:
            raise ValueError(f"--resume {args.resume} is a checkpoint of {ckpt['model_name']!r}, not {args.model!r}")
    kw = ckpt["model_kwargs"] if ckpt else model_kwargs(args.model, args.blocks_per_stage)

    torch.manual_seed(args.seed)
    model = get_model(args.model, fast=args.fast, **kw).to(ctx.device)
    if args.download:
        if ctx.is_main:
            data_mod.download(args.data, args.data_dir)
        dist_util.barrier(ctx)  # the other ranks read only once rank 0 has the files
    ds = data_mod.load(args.data, args.data_dir, shape=model.input_shape)
    if args.subset:
        ds.train = data_mod.Split(ds.train.images[:args.subset], ds.train.labels[:args.subset])
        ds.test = data_mod.Split(ds.test.images[:args.subset], ds.test.labels[:args.subset])
    if ctx.distributed and len(ds.train) < args.batch_size * ctx.world_size:
        raise ValueError(f"{len(ds.train)} training images are fewer than one global batch "
                         f"({args.batch_size} x {ctx.world_size} processes)")

    optimizer = make_optimizer(model, args.lr, args.momentum, args.weight_decay)
    start = 1
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["epoch"] + 1
    net = model
    if ctx.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    ckpt_path = os.path.join(out_dir, "checkpoint.pt")
    if ctx.is_main:
        os.makedirs(out_dir, exist_ok=True)
        if not ckpt:
            open(metrics_path, "w").close()
        print(f"cnnfast train: {args.model} ({'cnnfast' if args.fast else 'torch'} layers) on {args.data} "
              f"({len(ds.train)} train / {len(ds.test)} test images), {ctx.world_size} process(es) on "
              f"{ctx.device}, epochs {start}..{args.epochs}, out {out_dir}", file=sys.stderr, flush=True)
    last = None
    for epoch in range(start, args.epochs + 1):
        # The data order depends only on (seed, epoch): a resumed run sees the same batches.
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
        bar = None
        if ctx.is_main and args.progress:
            from tqdm import tqdm  # noqa: PLC0415

            nsteps = len(dist_util.shard_batches(len(ds.train), args.batch_size, ctx))
            bar = tqdm(total=nsteps, desc=f"epoch {epoch}/{args.epochs}", unit="step", file=sys.stderr,
                       dynamic_ncols=True, leave=True)
        lr = cosine_lr(args.lr, epoch, args.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tr_loss, tr_acc, seen, secs = train_epoch(
            net, optimizer, ds.train, args.batch_size, ctx, gen, bar,
            max_shift=2 if args.augment else 0, flip=args.augment and args.data == "cifar10")
        stats = dist_util.all_reduce_sum(ctx, torch.tensor([tr_loss * seen, tr_acc * seen, seen], dtype=torch.float64))
        # The bare model (its weights and buffers are the same on every rank): each rank runs
        # its own number of evaluation batches, which DDP's forward must not be asked to sync.
        te_loss, te_acc = evaluate(model, ds.test, ctx)
        last = {
            "epoch": epoch, "train_loss": float(stats[0] / stats[2]), "train_acc": float(stats[1] / stats[2]),
            "test_loss": te_loss, "test_acc": te_acc, "lr": lr, "seconds": secs,
            "images_per_sec": float(stats[2]) / max(secs, 1e-9), "model": args.model, "data": args.data,
            "fast": bool(args.fast), "world_size": ctx.world_size, "seed": args.seed,
        }
        if bar is not None:
            bar.set_postfix_str(f"loss {last['train_loss']:.4f}, test acc {te_acc:.2%}, "
                                f"{last['images_per_sec']:,.0f} img/s", refresh=False)
            bar.close()
        if ctx.is_main:
            _save({
                "format": CHECKPOINT_FORMAT, "model_name": args.model, "model_kwargs": kw,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "epochs": args.epochs, "lr": args.lr, "metrics": last,
                "data": args.data, "mean": ds.mean.tolist(), "std": ds.std.tolist(), "classes": ds.classes,
            }, ckpt_path)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(last) + "\n")
            if bar is None:
                print(f"epoch {epoch}/{args.epochs}: train loss {last['train_loss']:.4f}, "
                      f"test loss {te_loss:.4f}, test acc {te_acc:.2%}", file=sys.stderr, flush=True)
    if ctx.is_main:
        if last is not None:
            plot_metrics(metrics_path, os.path.join(out_dir, "curves.png"))
        if last is None:
            print(f"cnnfast train: {args.resume} already finished epoch {start - 1} of {args.epochs}; nothing to do",
                  file=sys.stderr)
        else:
            print(f"test accuracy {last['test_acc']:.2%} after epoch {last['epoch']}; checkpoint {ckpt_path}, "
                  f"metrics {metrics_path}")
    return last


def plot_metrics(metrics_path, png_path):
    """Loss and accuracy per epoch from the metrics file, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("cnnfast train: matplotlib is not installed; no curves.png", file=sys.stderr)
        return None
    with open(metrics_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    ep = [r["epoch"] for r in rows]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(8, 3))
    a0.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    a0.plot(ep, [r["test_loss"] for r in rows], "o-", label="test")
    a0.set_yscale("log")
    a0.set_xlabel("epoch")
    a0.set_title("cross-entropy loss", fontsize=9)
    a0.legend()
    a1.plot(ep, [100 * r["train_acc"] for r in rows], "o-", label="train")
    a1.plot(ep, [100 * r["test_acc"] for r in rows], "o-", label="test")
    a1.set_xlabel("epoch")
    a1.set_title(f"accuracy (%), last test {100 * rows[-1]['test_acc']:.2f}", fontsize=9)
    a1.legend()
    fig.suptitle(f"{rows[-1]['model']} on {rows[-1]['data']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=72)
    plt.close(fig)
    return png_path


def run(args):
    from .data import DataError  # noqa: PLC0415

    try:
        train(args)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"cnnfast train: error: {e}", file=sys.stderr)
        return 2
    return 0
