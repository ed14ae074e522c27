"""Job kinds and their handlers: the lazy registry the worker resolves when a job runs.

Owns :data:`HANDLERS` (job kind -> ``"module:function"``), :func:`resolve_handler`,
:func:`parse_handler_overrides` and the handler contract::

    handler(payload: dict, progress: Callable[[Progress], None], should_stop: Callable[[], bool]) -> JobResult

A handler reports :class:`~nas_core.jobresult.Progress` (``Progress(0.3, "epoch 3/10",
{"epoch": 3, "train_loss": 0.41})``; a plain dict or a bare fraction is read as one), checks
``should_stop()`` between steps and, when it is True, stops by raising :class:`JobStopped` (or
any exception): the worker then marks the job cancelled or requeues it, depending on why it
asked. It returns a :class:`~nas_core.jobresult.JobResult`: ``JobResult.metrics(m)`` for a job
tied to a candidate is written as the candidate's metrics, ``JobResult.data({...})`` is kept as
the job's result. (A plain dict is still accepted and read like a stored row written before
JobResult: see :meth:`~nas_core.jobresult.JobResult.from_dict`.)

Handlers are imported only when a job of their kind runs, so a worker starts fast and
a missing optional part (e.g. the super-network) fails that job with a message, not
the worker. Extra kinds come from ``register_handler`` or ``--handler KIND=MODULE:FUNC``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nas_core.errors import UserError
from nas_core.jobresult import JobResult, Progress

#: progress(report) and should_stop() as handed to a handler.
ProgressFn = Callable[[Progress], None]
StopFn = Callable[[], bool]
Handler = Callable[[dict[str, Any], ProgressFn, StopFn], JobResult]

#: Built-in job kinds. Values are import targets, resolved when a job of the kind runs.
HANDLERS: dict[str, str] = {
    "evaluate": "nas_core.evaluator:run_request",
    "supernet_train": "nas_core.supernet.jobs:train",
    "supernet_measure": "nas_core.supernet.jobs:measure",
    "supernet_calibrate": "nas_core.supernet.calibrate:calibrate_job",  # opt-in: tau vs from-scratch
    "supernet_finetune": "nas_core.supernet.jobs:finetune",
    "evaluate_rung": "nas_core.rungs:run_rung",  # successive halving: one rung of a candidate
    "remeasure": "nas_core.rungs:run_remeasure",  # a measured candidate again, another init seed
}


class UnknownJobKind(UserError):
    """A job's kind has no handler."""


class HandlerImportError(UserError):
    """A handler's module or function cannot be imported."""


class JobStopped(Exception):
    """Raised by a handler that saw ``should_stop()`` turn True."""


def register_handler(kind: str, target: str) -> None:
    """Add or replace the handler of ``kind`` (``target`` = ``"module:function"``)."""
    _check_target(target)
    HANDLERS[kind] = target


def _check_target(target: str) -> tuple[str, str]:
    module, sep, func = target.partition(":")
    if not sep or not module or not func:
        raise HandlerImportError(f"handler {target!r} must look like 'package.module:function'")
    return module, func


def parse_handler_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["kind=module:func", ...]`` -> ``{kind: "module:func"}`` (from ``--handler``)."""
    out: dict[str, str] = {}
    for item in items:
        kind, sep, target = item.partition("=")
        if not sep or not kind:
            raise HandlerImportError(f"--handler {item!r} must look like KIND=package.module:function")
        _check_target(target)
        out[kind] = target
    return out


def handler_target(kind: str, overrides: Mapping[str, str] | None = None) -> str:
    """The import target for ``kind``.

    Raises:
        UnknownJobKind: naming the kinds that exist.
    """
    table = {**HANDLERS, **(overrides or {})}
    if kind not in table:
        raise UnknownJobKind(f"no handler for job kind {kind!r}; known kinds: {', '.join(sorted(table))}")
    return table[kind]


def load_handler(target: str) -> Handler:
    """Import ``"module:function"``.

    Raises:
        HandlerImportError: the module or function does not exist (the message says which).
    """
    module_name, func_name = _check_target(target)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise HandlerImportError(
            f"handler module {module_name!r} is not available ({exc}); this part of EquiNAS may not be "
            "installed or built yet"
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise HandlerImportError(f"{module_name} has no function {func_name!r}")
    return func


def resolve_handler(kind: str, overrides: Mapping[str, str] | None = None) -> Handler:
    """The callable handling ``kind`` (imported now)."""
    return load_handler(handler_target(kind, overrides))


def error_message(exc: BaseException) -> str:
    """A clean one-line message for the job row: a UserError's own words, else type and text."""
    if isinstance(exc, UserError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())[:2000]
