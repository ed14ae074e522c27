"""Job handlers for the worker tests: they sleep in short steps, report progress and return results.

Payload keys: ``steps`` (int), ``step_s`` (seconds per step), ``metrics`` (return a Metrics dict
instead of a small dict), ``fail`` (raise a UserError with this message), ``crash`` (raise a bug),
``log`` (a file: one line per completed run, to count how often the handler finished).
"""

from __future__ import annotations

import os
import time

from nas_core.errors import UserError
from nas_core.jobs import JobStopped
from tests.store.helpers import make_metrics


def sleep(payload, progress, should_stop):
    steps = int(payload.get("steps", 3))
    if payload.get("log_start"):  # "<tag> start|end <time> <pid>" lines: when the handler really ran
        with open(payload["log_start"], "a") as fh:
            fh.write(f"{payload.get('tag', '')} start {time.time()} {os.getpid()}\n")
    for i in range(steps):
        if should_stop():
            raise JobStopped(f"stopped at step {i}")
        time.sleep(float(payload.get("step_s", 0.05)))
        progress({"epoch": i + 1, "fraction": (i + 1) / steps, "train_loss": 1.0 / (i + 1)})
    if payload.get("fail"):
        raise UserError(payload["fail"])
    if payload.get("crash"):
        raise ZeroDivisionError("bug in handler")
    if payload.get("log"):
        with open(payload["log"], "a") as fh:
            fh.write(f"{payload.get('tag', '')} {time.time()} {os.getpid()}\n")
    if payload.get("log_start"):
        with open(payload["log_start"], "a") as fh:
            fh.write(f"{payload.get('tag', '')} end {time.time()} {os.getpid()}\n")
    if payload.get("metrics"):
        return make_metrics(acc=float(payload.get("acc", 0.7))).to_dict()
    return {"slept_steps": steps, "pid": os.getpid()}


def ignores_stop(payload, progress, should_stop):
    """A handler that never checks should_stop (the worker must still stop within its grace)."""
    time.sleep(float(payload.get("seconds", 30)))
    return {"done": True}


def bad_metrics(payload, progress, should_stop):
    return {"fairness": {}, "hardware": {}, "test_acc": 0.5}
