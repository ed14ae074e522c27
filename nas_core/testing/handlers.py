"""Job handlers the executor contract suite submits (importable on every node that runs nas_core).

``steps``: payload ``steps`` (int, default 3), ``step_s`` (seconds per step), ``fail`` (raise a
UserError with this message after the steps), ``crash`` (raise a bug after the steps). It reports
``{"epoch": i, "fraction": i / steps}`` after every step and honours ``should_stop`` before each.
``not_a_dict`` returns a list (an executor must refuse it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from nas_core.errors import UserError
from nas_core.jobs import JobStopped

STEPS = "nas_core.testing.handlers:steps"
NOT_A_DICT = "nas_core.testing.handlers:not_a_dict"
MISSING = "nas_core.testing.handlers:no_such_handler"


def steps(payload: dict[str, Any], progress: Callable[[dict[str, Any]], None],
          should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Sleep in steps, reporting progress; fail, crash or stop as the payload says."""
    n = int(payload.get("steps", 3))
    for i in range(n):
        if should_stop():
            raise JobStopped(f"stopped at step {i}")
        time.sleep(float(payload.get("step_s", 0.01)))
        progress({"epoch": i + 1, "fraction": (i + 1) / n})
    if payload.get("fail"):
        raise UserError(str(payload["fail"]))
    if payload.get("crash"):
        raise ZeroDivisionError("bug in handler")
    return {"steps": n, "pid": os.getpid(), "echo": payload.get("echo")}


def not_a_dict(payload: dict[str, Any], progress: Callable[[dict[str, Any]], None],
               should_stop: Callable[[], bool]) -> Any:
    """Return something that is not a dict."""
    return [1, 2, 3]
