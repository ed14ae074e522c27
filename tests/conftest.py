"""Shared test setup: quiet, single-threaded torch so tests stay fast and repeatable on 2 cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard requirement
    pass
