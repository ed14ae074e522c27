"""``python -m nas_core``: the headless CLI (see :mod:`nas_core.cli`).

A process started this way may train (the worker, ``search``, ``evaluate``, ``supernet train``), so
it first sets the C allocator for training (:func:`nas_core.alloc.tune_for_training`), before any
thread starts. ``cli.main`` called in another process (tests, the app) leaves the allocator alone.
"""

from nas_core.alloc import tune_for_training

tune_for_training()

from nas_core.cli import main  # noqa: E402  (after the allocator's settings, before any thread)

if __name__ == "__main__":
    raise SystemExit(main())
