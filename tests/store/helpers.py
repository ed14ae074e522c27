"""Small builders shared by the store, worker, Ray, serve and browser tests (no torch, no training)."""

from __future__ import annotations

import random
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas_core.records import FairnessReport, GroupMetrics, HardwareMetrics, Metrics, Proposal
from nas_core.space import Choices, sample


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_healthy(port: int) -> bool:
    """True once the Streamlit server on 127.0.0.1:``port`` answers its health check with "ok"."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


def make_metrics(acc: float = 0.8, unfairness: float = 0.05, params: int = 1234, estimate: bool = False) -> Metrics:
    """A plausible Metrics record with two sex groups and three age groups."""
    groups = (
        GroupMetrics("sex", "male", 40, acc + 0.01, (acc - 0.05, acc + 0.05)),
        GroupMetrics("sex", "female", 38, acc - 0.01, (acc - 0.06, acc + 0.04)),
        GroupMetrics("age", "young", 20, acc),
        GroupMetrics("age", "middle", 30, acc + 0.02),
        GroupMetrics("age", "old", 28, acc - 0.02),
    )
    fr = FairnessReport(overall_accuracy=acc, n=80, unfairness=unfairness, eodd=0.1, eopp1=0.08, eopp2=0.02,
                        groups=groups)
    hw = HardwareMetrics(params=params, macs=params * 10, size_mb=params * 4 / 1e6, latency_image_s=0.001,
                         throughput=1000.0, peak_memory_mb=3.0)
    return Metrics(train_loss=0.5, train_acc=acc + 0.05, val_loss=0.6, val_acc=acc, test_acc=acc,
                   balanced_acc=acc - 0.1, per_class_recall=(("MEL", acc), ("NV", None)), fairness=fr,
                   hardware=hw, epochs=2, best_epoch=1, estimate=estimate, class_names=("MEL", "NV"))


def proposals(n: int, seed: int = 0, origin: str = "random") -> list[Proposal]:
    """``n`` proposals with distinct canonical keys."""
    rng = random.Random(seed)
    choices = Choices.default()
    out, keys = [], set()
    while len(out) < n:
        spec = sample(choices, rng)
        if spec.key not in keys:
            keys.add(spec.key)
            out.append(Proposal(spec=spec, origin=origin, rationale="because"))
    return out


def wait_until(cond: Callable[[], Any], timeout: float, step: float) -> Any:
    """Poll ``cond`` until it returns something truthy (returned) or ``timeout`` seconds pass (fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def children(pid: int) -> list[int]:
    """Pids of the processes whose parent is ``pid`` (Linux: read from /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
    return out
