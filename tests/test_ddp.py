"""Training under torchrun with DistributedDataParallel: 2 CPU processes (gloo on 127.0.0.1) end with
the same weights as one process over the same global batches."""
import os
import socket
import subprocess
import sys

import pytest
import torch

from cnnfast import distributed as du
from cnnfast import train

from test_train import cli, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_make_up_the_global_batches():
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    single = du.shard_batches(100, 10, du.Context(), generator=gen())
    ranks = [du.shard_batches(100, 5, du.Context(rank=r, world_size=2), generator=gen()) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 10
    for step, batch in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), batch)
    # 3 ranks x 7 do not divide 100: the incomplete last global batch is dropped on every rank.
    three = [du.shard_batches(100, 7, du.Context(rank=r, world_size=3), generator=gen()) for r in range(3)]
    assert [len(b) for b in three] == [4, 4, 4] and all(len(x) == 7 for b in three for x in b)
    seen = torch.cat([x for b in three for x in b])
    assert len(seen.unique()) == len(seen) == 84  # disjoint shares


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path):
    # lr 0.01 keeps the two runs' rounding-level weight differences small, so that no ReLU input or
    # max-pool pair is pushed across its kink (which would change a gradient by O(1) and part the
    # runs legitimately; see test_train.test_same_learning_fast_and_torch).
    common = ["lenet", "--subset", 256, "--epochs", 2, "--no-progress", "--seed", 1, "--lr", 0.01]
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "cnnfast", "train", *map(str, common), "--batch-size", "16", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as under torchrun, so both runs use the same kernels' thread split
    try:
        assert cli(*common, "--batch-size", 32, "--out", tmp_path / "one") == 0
    finally:
        torch.set_num_threads(before)
    ddp = train.load_checkpoint(str(tmp_path / "ddp" / "checkpoint.pt"))
    one = train.load_checkpoint(str(tmp_path / "one" / "checkpoint.pt"))
    assert ddp["epoch"] == one["epoch"] == 2
    # 2 x 8 steps of 32 images. DDP averages the two ranks' mean gradients over 16 images; one
    # process takes the mean over 32: the same number, rounded differently (fp32, eps 1.2e-7,
    # sums of a few thousand terms: ~1e-6 relative on each gradient). Over 16 steps of lr <= 0.01
    # with momentum 0.9 (each gradient counted up to 1/(1-0.9) = 10 times), weights move by
    # <= ~0.1 * |g| per step, so the rounding reaches the weights at ~1e-7 at most; 1e-5 absolute
    # bounds it with margin (measured: 1.5e-8), while training on other batches does not pass
    # (one process with batch 16 ends 0.02 away).
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    m_ddp, m_one = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    assert [m["world_size"] for m in m_ddp] == [2, 2]
    for a, b in zip(m_ddp, m_one):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4  # the mean over the same 256 images
        assert abs(a["test_loss"] - b["test_loss"]) < 1e-4
