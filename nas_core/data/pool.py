"""Process pools for image work (decode, check, render) whose processes end with the process that made them.

A ``ProcessPoolExecutor`` worker waits on a pipe that its forked siblings also hold open, so when
the parent is killed (kill -9 of the app during a zip import) the workers never see the pipe
close and sleep forever. :func:`process_pool` gives every worker Linux's parent-death signal
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``), and forks them directly from this process (Python 3.14
makes "forkserver" the default, whose workers are another process's children); elsewhere it is a
plain pool. Linux sends the signal when the *thread* that forked a worker ends, so use a pool in
the thread that made it (a ``with process_pool(...)`` block), as every caller here does.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, then: Callable[..., Any] | None = None, *args: Any) -> None:
    """Pool initializer (Linux): be killed when the parent dies; then run ``then(*args)``."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: nothing to ask for
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)
    if then is not None:
        then(*args)


def process_pool(max_workers: int, initializer: Callable[..., Any] | None = None,
                 initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers die with this process (see the module docstring)."""
    if not sys.platform.startswith("linux"):
        return ProcessPoolExecutor(max_workers=max_workers, initializer=initializer, initargs=initargs)
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=die_with_parent, initargs=(os.getpid(), initializer, *initargs))
