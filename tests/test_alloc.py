"""The allocator's training settings (nas_core.alloc), each checked in a fresh process: they are per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas_core import alloc

ROOT = Path(__file__).resolve().parents[1]

# Allocates and frees a 64 MB block twice, touching every page, and counts the page faults of the
# second time: under glibc's defaults the block is a fresh mapping each time (a fault per 4 KB page);
# tuned, the heap hands the same memory back. Importing nas_core.__main__ is what `python -m nas_core`
# does before the CLI runs.
CHILD = r"""
import ctypes, json, resource, sys
if sys.argv[1] == "cli":
    import nas_core.__main__  # noqa: F401
from nas_core import alloc
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
N = 64 * 2**20

def touch_once():
    p = libc.malloc(N)
    ctypes.memset(p, 1, N)
    libc.free(p)

touch_once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_once()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
held = rss()
released = alloc.release_memory()
print(json.dumps({"tuned": alloc._state.get("tuned", False), "faults": faults, "released": released,
                  "rss_drop_mb": (held - rss()) / 2**20}))
"""

glibc_only = pytest.mark.skipif(alloc._libc() is None or not Path("/proc/self/statm").exists(),
                                reason="nas_core.alloc changes only glibc's allocator (Linux)")


def _child(mode: str, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k != alloc.ENV}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**full, "PYTHONPATH": str(ROOT), **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_a_cli_process_reuses_freed_memory_instead_of_faulting_in_fresh_pages():
    tuned = _child("cli", EQUINAS_MALLOC="training")  # whatever this machine's memory (the rule is tested below)
    assert tuned["tuned"] is True
    assert tuned["faults"] < 1000  # 64 MB reused from the heap: no new page
    # An idle worker hands the free heap back (it calls this after every job).
    assert tuned["released"] is True and tuned["rss_drop_mb"] > 32
    # With nothing in the environment the machine's memory decides (16 GiB or more: tuned).
    assert _child("cli")["tuned"] is ((alloc.physical_memory_gib() or alloc.MIN_MEMORY_GIB) >= alloc.MIN_MEMORY_GIB)


@glibc_only
def test_glibcs_defaults_fault_in_every_page_again_and_the_switch_keeps_them():
    for got in (_child("plain"), _child("cli", EQUINAS_MALLOC="default")):
        assert got["tuned"] is False
        assert got["faults"] > 10_000  # 64 MB / 4 KB = 16,384 pages, each a fresh fault
        assert got["released"] is False  # nothing to do: glibc trims by itself


def test_too_little_memory_or_the_switch_leaves_the_allocator_alone(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(alloc, "_libc", lambda: FakeLibc())
    for env, memory, expected in (("default", 64.0, False), ("", 8.0, False), ("training", 8.0, True),
                                  ("", 64.0, True), ("", None, True)):
        monkeypatch.setattr(alloc, "_state", {})
        monkeypatch.setenv(alloc.ENV, env)
        monkeypatch.setattr(alloc, "physical_memory_gib", lambda m=memory: m)
        calls.clear()
        assert alloc.tune_for_training() is expected
        assert bool(calls) is expected
        if expected:
            assert dict(calls) == {alloc.M_ARENA_MAX: 1, alloc.M_MMAP_MAX: 0, alloc.M_TRIM_THRESHOLD: alloc.TRIM_THRESHOLD}
    # Once decided, a process keeps its settings: a second call changes nothing.
    calls.clear()
    assert alloc.tune_for_training() is True and not calls
