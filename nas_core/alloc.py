"""The C allocator's settings for a process that trains networks on the CPU (glibc only).

Why. glibc's malloc serves every block above its mmap threshold (at most 32 MB) with a fresh
``mmap`` and hands it back with ``munmap`` when it is freed, and it trims freed memory at the top
of its heaps back to the kernel. A training step allocates and frees the same large activation
and gradient tensors every batch (an MBConv block's expanded activations at 64 px are 30-60 MB),
so every step touches new pages: the kernel takes a page fault and zeroes each 4 KB page again.
Measured on this project's 2-core machine (``python -m benchmarks alloc``, the 24 fidelity specs):
tuned, MBConv and depthwise networks train in 0.47-0.60x the CPU, the default plain CNN in 0.77x,
all 24 in 0.77x; a demo iteration's final result came 215.7 -> 167.4 s (README, Benchmarks).

What :func:`tune_for_training` sets, once per process, before the training threads start:

- ``M_MMAP_MAX = 0``: no block gets its own mapping; large ones come from the heap and are reused;
- ``M_TRIM_THRESHOLD`` very large: freed memory stays in the heap during a training;
- ``M_ARENA_MAX = 1``: every thread allocates from the main heap. Without it the worker's training
  thread gets its own arena, whose heaps are mappings of at most 64 MB that glibc shrinks and
  re-maps, and the gain is lost.

The cost is memory: a training process keeps its peak heap while it trains, and fragmentation
adds to it (the benchmark prints the peak resident memory of both). :func:`release_memory`
(``malloc_trim``) hands what is free back to the kernel; the worker calls it after every job, so
an idle worker does not hold a finished training's memory.

Where it applies: processes that train, i.e. ``python -m nas_core`` (the worker, the CLI), Ray
tasks and the benchmarks. Never the app's process (it trains nothing) and never a library import.
Elsewhere than glibc (macOS, musl) nothing changes; on a machine with less than
:data:`MIN_MEMORY_GIB` of memory it stays off (the heap's peak can reach twice a training's peak:
see the benchmark). ``EQUINAS_MALLOC=default`` in the environment turns it off anywhere,
``EQUINAS_MALLOC=training`` turns it on whatever the memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
#: Freed memory up to this much stays in the heap (the largest value mallopt takes: an int).
TRIM_THRESHOLD = 2**31 - 1
#: Environment variable: "default" keeps glibc's own settings, "training" tunes whatever the memory.
ENV = "EQUINAS_MALLOC"
#: Below this much physical memory the tuning stays off: a training's heap may hold up to about
#: twice its peak (measured: median 1.09x over the fidelity specs, 1.69x for the largest MBConv
#: network, 3.2 -> 5.5 GB at 64 px), and an 8 GB laptop also runs the app and a browser.
MIN_MEMORY_GIB = 16

_state: dict[str, bool] = {}


@functools.cache  # find_library may run ldconfig: once per process, not after every job
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim") or not hasattr(libc, "gnu_get_libc_version"):
        return None  # not glibc: musl and macOS have no mallopt, or one that means something else
    return libc


def physical_memory_gib() -> float | None:
    """This machine's physical memory in GiB, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def tune_for_training() -> bool:
    """Set the allocator for training (see the module docstring); True when the settings are in force.

    Idempotent. Call it at the start of a process that trains, before it starts threads.
    """
    if "tuned" in _state:
        return _state["tuned"]
    ok = False
    choice, memory = os.environ.get(ENV, "").strip().lower(), physical_memory_gib()
    if choice == "training" or (choice != "default" and (memory is None or memory >= MIN_MEMORY_GIB)):
        libc = _libc()
        if libc is not None:
            ok = all(libc.mallopt(param, value) == 1 for param, value in (
                (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
            if not ok:
                log.warning("could not set the allocator for training (mallopt refused); training works, slower")
    _state["tuned"] = ok
    return ok


def release_memory() -> bool:
    """Give free heap memory back to the kernel (``malloc_trim(0)``) in a process tuned by
    :func:`tune_for_training` (elsewhere glibc trims by itself); True when something was released."""
    if not _state.get("tuned"):
        return False
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
