"""Multi-process training helpers: when launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment) the process group is joined with gloo on CPU or nccl on GPU; otherwise everything
here is a no-op for a single process."""
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "setup", "cleanup", "barrier", "all_reduce_sum", "shard_batches"]


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def _device(arg, local_rank):
    if arg in (None, "auto"):
        arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(arg)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {arg}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def setup(device="auto", timeout_s=300):
    """Join the process group when launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT in the environment) and pick this process's device; returns a :class:`Context`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank, world, local_rank, dev)


def cleanup(ctx):
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx):
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(ctx, tensor):
    """Sum ``tensor`` over all ranks (in place; returns it)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_batches(n, batch_size, ctx, generator=None, drop_last=None):
    """This rank's batches of indices into a data set of ``n`` items.

    The (shuffled, when ``generator`` is given) order is cut into global batches of
    ``batch_size * world_size`` items and rank r takes items ``[r * batch_size, (r + 1) * batch_size)``
    of each, so the ranks together see exactly the batches of one process with batch size
    ``batch_size * world_size``. With more than one rank an incomplete last global batch is dropped
    (every rank must run the same number of steps with equal shares); a single process keeps it
    unless ``drop_last`` says otherwise.
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    gbs = batch_size * ctx.world_size
    if drop_last is None:
        drop_last = ctx.distributed
    count = n // gbs if drop_last else -(-n // gbs)
    out = []
    for g in range(count):
        chunk = order[g * gbs:(g + 1) * gbs]
        local = chunk[ctx.rank * batch_size:(ctx.rank + 1) * batch_size]
        if len(local):
            out.append(local)
    return out
