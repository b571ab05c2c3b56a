"""The CPU output cache: memory for the CPU ops' outputs, kept for reuse.

glibc's malloc returns the freed top of its heap to the system, so a training step that frees its
activations and gradients in bulk faults every page of them in again on the next step (a zero-filled
4 KB page per fault). The CPU kernels' outputs of 64 KB or more therefore come from a cache that keeps
a freed output's block, keyed by its size, for the next output of that size. It holds at most
``cnnfast.backends.cpu.output_cache_mb`` megabytes (seeded from ``CNNFAST_CPU_OUTPUT_CACHE_MB``; default
1024, 0 turns the cache off), freeing its oldest blocks first. Only the blocks of outputs already freed are held:
:func:`empty_cpu_cache` gives them back to the system, as ``torch.cuda.empty_cache`` does on a GPU.
"""
from . import _C

__all__ = ["cpu_cache_stats", "empty_cpu_cache"]


def cpu_cache_stats():
    """``{"held_bytes", "limit_bytes", "hits", "misses"}``: the bytes of freed outputs held for reuse,
    the most it holds, and how many outputs came from it and how many from malloc."""
    held, limit, hits, misses = _C._cpu_cache_stats()
    return {"held_bytes": held, "limit_bytes": limit, "hits": hits, "misses": misses}


def empty_cpu_cache():
    """Frees every block the CPU output cache holds (outputs still in use return to it when freed)."""
    _C._empty_cpu_cache()
