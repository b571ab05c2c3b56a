"""The CPU output cache (csrc/cpu/common/output_cache.h, cnnfast/memory.py): a freed output's block serves the
next output of its size, every op still writes each element of its outputs (blocks are reused
uninitialized), the byte limit and its oldest-first eviction, CNNFAST_CPU_OUTPUT_CACHE_MB (off, bad values),
empty_cpu_cache, and tensors on cached blocks behaving as any other."""
import io
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
import torch.nn.functional as tF

import cnnfast
from cnnfast import functional as F
from reference import assert_close_to_reference

MIN_BYTES = 64 << 10  # kOutputCacheMinBytes: smaller outputs are plain at::empty
PAGE = 4096           # blocks are keyed by their size rounded up to a page


def poison(nbytes, count=1):
    """Leaves `count` NaN-filled blocks of `nbytes` (rounded to a page) in the cache, newest last."""
    n = -(-nbytes // PAGE) * PAGE // 4
    ys = [F.relu(torch.full((n,), float("nan"))) for _ in range(count)]
    del ys


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env)


def test_a_freed_output_block_serves_the_next_output_of_its_size():
    x1, x2 = torch.randn(16, 16, 32, 32), torch.randn(16, 16, 32, 32)
    y1 = F.relu(x1)
    p = y1.data_ptr()
    del y1
    before = cnnfast.cpu_cache_stats()
    y2 = F.relu(x2)
    after = cnnfast.cpu_cache_stats()
    assert y2.data_ptr() == p
    assert after["hits"] == before["hits"] + 1
    assert after["held_bytes"] == before["held_bytes"] - x2.numel() * 4
    torch.testing.assert_close(y2, torch.relu(x2), rtol=0, atol=0)


def test_small_outputs_bypass_the_cache():
    before = cnnfast.cpu_cache_stats()
    y = F.relu(torch.randn(MIN_BYTES // 4 - 1))
    del y
    after = cnnfast.cpu_cache_stats()
    assert (after["hits"], after["misses"], after["held_bytes"]) == \
        (before["hits"], before["misses"], before["held_bytes"])


def _nbytes(t):
    return t.numel() * t.element_size()


# Every op and gradient writes each element of its outputs: each output lands on a NaN-filled block
# (poisoned just before) and must still match torch, by the project's tolerance rule against a float64
# reference (tests/reference.py); its reduction lengths are the convolution's: C*R*S for the forward,
# K*R*S for grad-input, N*P*Q for grad-weight and grad-bias.
def test_every_op_writes_every_element_of_a_reused_block():
    torch.manual_seed(0)
    x64, w64, b64 = torch.randn(8, 16, 24, 24, dtype=torch.float64), torch.randn(32, 16, 3, 3, dtype=torch.float64), \
        torch.randn(32, dtype=torch.float64)
    conv_lengths = lambda s: [16 * 9, 32 * 9, 8 * (24 // s) ** 2, 8 * (24 // s) ** 2]
    cases = [
        ("conv2d", lambda m, x, w, b: m.conv2d(x, w, b, 1, 1), conv_lengths(1)),
        ("conv2d stride 2", lambda m, x, w, b: m.conv2d(x, w, b, 2, 1), conv_lengths(2)),
        ("conv2d_relu", lambda m, x, w, b: (F.conv2d_relu(x, w, b, 1, 1) if m is F
                                            else torch.relu(tF.conv2d(x, w, b, 1, 1))), conv_lengths(1)),
        ("max_pool2d", lambda m, x, w, b: m.max_pool2d(x, 2), [1, 1]),
        ("relu", lambda m, x, w, b: m.relu(x), [1, 1]),
        ("conv2d_relu_max_pool2d", lambda m, x, w, b: (
            F.conv2d_relu_max_pool2d(x, w, b, 1, 1, kernel_size=2) if m is F
            else tF.max_pool2d(torch.relu(tF.conv2d(x, w, b, 1, 1)), 2)), conv_lengths(1)),
    ]
    for name, op, lengths in cases:
        leaves = lambda dtype: [t.to(dtype).requires_grad_() for t in (x64, w64, b64)]
        results = {}
        for key, m, dtype in (("ref", tF, torch.float64), ("torch", tF, torch.float32), ("ours", F, torch.float32)):
            x, w, b = leaves(dtype)
            used = [x] if len(lengths) == 2 else [x, w, b]
            if key == "ours":  # a NaN-filled block for each output size the forward will ask for
                for t in (x, w, b):
                    poison(_nbytes(op(tF, x, w, b)), count=2)
                poison(op(tF, x, w, b).numel() * 8, count=2)  # int64 indices of the pooling ops
            y = op(m, x, w, b)
            gy = torch.ones_like(y)
            if key == "ours":  # and for each gradient
                for t in [y] + used:
                    poison(_nbytes(t), count=2)
            results[key] = [y.detach()] + [g for g in torch.autograd.grad(y, used, gy)]
        for i, (ours, th, ref) in enumerate(zip(results["ours"], results["torch"], results["ref"])):
            assert not ours.isnan().any(), f"{name}: output {i}"
            assert_close_to_reference(ours, th, ref, lengths[i], f"{name}: output {i}")


def test_empty_cpu_cache_frees_the_held_blocks():
    y = F.relu(torch.randn(1 << 18))
    del y
    assert cnnfast.cpu_cache_stats()["held_bytes"] >= 1 << 20
    cnnfast.empty_cpu_cache()
    assert cnnfast.cpu_cache_stats()["held_bytes"] == 0
    # Outputs still in use when it is emptied come back to it when freed.
    y = F.relu(torch.randn(1 << 18))
    cnnfast.empty_cpu_cache()
    del y
    assert cnnfast.cpu_cache_stats()["held_bytes"] == 1 << 20


def test_an_output_freed_on_another_thread_returns_to_the_cache():
    cnnfast.empty_cpu_cache()
    box = [F.relu(torch.randn(1 << 18))]
    t = threading.Thread(target=box.clear)
    t.start()
    t.join()
    assert cnnfast.cpu_cache_stats()["held_bytes"] == 1 << 20


def test_tensors_on_cached_blocks_resize_and_serialize_as_any_tensor():
    x = torch.randn(1 << 16)
    y = F.relu(x)
    y.resize_(1 << 17)  # through the storage's allocator, this cache: the old values are kept
    torch.testing.assert_close(y[: 1 << 16], torch.relu(x), rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(F.relu(x), buf)
    buf.seek(0)
    torch.testing.assert_close(torch.load(buf), torch.relu(x), rtol=0, atol=0)
    assert (F.relu(x).numpy() == torch.relu(x).numpy()).all()
    with torch.inference_mode():  # an inference tensor, as torch's own output there
        assert F.relu(x).is_inference() and torch.relu(x).is_inference()
    xc = torch.randn(4, 16, 32, 32).to(memory_format=torch.channels_last)  # 256 KB, the layout kept
    assert F.relu(xc).stride() == torch.relu(xc).stride()
    y = F.relu(x)
    y.add_(1)  # an ordinary version counter
    assert y._version == 1


def test_the_limit_is_kept_and_the_oldest_blocks_go_first():
    # Limit 1 MB: blocks of 300, 400 and 500 KB (page multiples) are freed in that order; the third
    # pushes the total past the limit, so the oldest (300 KB) is freed and the other two stay.
    out = run_python("""
        import torch, cnnfast
        from cnnfast import functional as F
        kb = lambda k: F.relu(torch.randn(k * 256))
        a, b, c = kb(300), kb(400), kb(500)
        del a, b, c
        s = cnnfast.cpu_cache_stats()
        print(s["held_bytes"], s["limit_bytes"])
        h = s["hits"]
        a2 = kb(300); print(cnnfast.cpu_cache_stats()["hits"] - h)
        b2 = kb(400); print(cnnfast.cpu_cache_stats()["hits"] - h)
        big = kb(2048); del big  # larger than the limit on its own: freed, nothing evicted
        print(cnnfast.cpu_cache_stats()["held_bytes"])
    """, CNNFAST_CPU_OUTPUT_CACHE_MB="1")
    assert out.returncode == 0, out.stderr
    held, limit, hit_a, hit_b, held_after = map(int, out.stdout.split())
    assert (held, limit) == (900 << 10, 1 << 20)
    assert (hit_a, hit_b) == (0, 1)  # 300 KB was evicted; 400 KB is served from the cache
    assert held_after == 500 << 10


def test_cache_off():
    out = run_python("""
        import torch, cnnfast
        from cnnfast import functional as F
        x = torch.randn(1 << 18)
        for _ in range(3):
            y = F.relu(x)
            assert torch.equal(y, torch.relu(x))
            del y
        s = cnnfast.cpu_cache_stats()
        print(s["held_bytes"], s["limit_bytes"], s["hits"], s["misses"])
    """, CNNFAST_CPU_OUTPUT_CACHE_MB="0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0", "0", "0"]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "12MB"])
def test_a_bad_limit_is_a_clear_error(value):
    out = run_python("""
        import torch, cnnfast
        cnnfast.functional.relu(torch.randn(1 << 18))
    """, CNNFAST_CPU_OUTPUT_CACHE_MB=value)
    # The variable is read at import.
    assert out.returncode != 0
    assert "ValueError" in out.stderr
    assert "CNNFAST_CPU_OUTPUT_CACHE_MB must be a whole number of megabytes >= 0" in out.stderr
    assert f"got '{value}'" in out.stderr


def test_the_limit_is_a_setting_and_lowering_it_frees_held_blocks():
    cnnfast.empty_cpu_cache()
    poison(1 << 20)
    assert cnnfast.cpu_cache_stats()["held_bytes"] == 1 << 20
    before = cnnfast.backends.cpu.output_cache_mb
    with cnnfast.backends.cpu.flags(output_cache_mb=0):
        s = cnnfast.cpu_cache_stats()
        assert (s["held_bytes"], s["limit_bytes"]) == (0, 0)
        poison(1 << 20)  # the cache off: nothing is kept
        assert cnnfast.cpu_cache_stats()["held_bytes"] == 0
    assert cnnfast.backends.cpu.output_cache_mb == before
    assert cnnfast.cpu_cache_stats()["limit_bytes"] == before << 20
    with pytest.raises(ValueError, match="output_cache_mb must be a whole number of megabytes >= 0.*got -1"):
        cnnfast.backends.cpu.output_cache_mb = -1


def _relu_in_child(q):
    # One thread, as DataLoader's workers: GNU OpenMP cannot run a parallel region in a child forked
    # after the parent ran one (torch.relu hangs there too).
    torch.set_num_threads(1)
    x = torch.randn(1 << 18)
    for _ in range(3):
        y = F.relu(x)
        ok = torch.equal(y, torch.relu(x))
        del y
    q.put(ok and cnnfast.cpu_cache_stats()["hits"] >= 2)


def test_a_forked_child_uses_and_frees_cached_outputs():
    # The child inherits the cache (the parent's held blocks included) with its lock released.
    import multiprocessing as mp
    y = F.relu(torch.randn(1 << 18))
    del y  # one held block of that size in the parent
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_relu_in_child, args=(q,))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0
    assert q.get(timeout=1) is True
