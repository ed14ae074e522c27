"""Pool processes for image work end with the process that made them (a kill -9 of the app during an import)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas_core.data.pool import process_pool
from nas_core.store.queue import _pid_alive
from tests.store.helpers import children, wait_until

ROOT = Path(__file__).resolve().parents[2]

PARENT = """
import sys, time
from concurrent.futures import ProcessPoolExecutor
from nas_core.data.pool import process_pool
pool = process_pool(2) if sys.argv[1] == "process_pool" else ProcessPoolExecutor(2)
for f in [pool.submit(time.sleep, 0.2) for _ in range(4)]:
    f.result()
print("ready", flush=True)
time.sleep(120)
"""


def _kill_parent(kind: str) -> list[int]:
    """Start a parent with a pool of ``kind``, kill -9 it, and return its two pool processes' pids."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", PARENT, kind], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        kids = children(proc.pid)
        assert len(kids) == 2, kids
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return kids
    finally:
        proc.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_pool_processes_die_with_a_killed_parent():
    kids = _kill_parent("process_pool")
    wait_until(lambda: not any(_pid_alive(k) for k in kids), timeout=10, step=0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_plain_pool_would_leave_them_behind():
    """The check above can fail: the standard library's pool leaves both processes asleep."""
    kids = _kill_parent("plain")
    time.sleep(1)
    left = [k for k in kids if _pid_alive(k)]
    try:
        assert len(left) == 2
    finally:
        for k in left:
            os.kill(k, signal.SIGKILL)


def _set_flag(value: str) -> None:
    os.environ["EQUINAS_POOL_TEST"] = value


def _flag(_: int) -> str | None:
    return os.environ.get("EQUINAS_POOL_TEST")


def test_the_pool_runs_work_and_its_initializer():
    with process_pool(2, initializer=_set_flag, initargs=("on",)) as pool:
        got = list(pool.map(_flag, range(4)))
    assert got == ["on"] * 4
