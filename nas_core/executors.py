"""Where a job's handler actually runs: in this process (local) or as Ray tasks on a cluster.

Owns the :class:`Executor` base and its two implementations, :class:`LocalExecutor`
and :class:`RayExecutor`, plus :class:`Execution` (one submitted job). The worker
(:mod:`nas_core.worker`) is the only caller and the only writer of the store: an
executor never touches the database, it only runs handlers and hands back their
progress reports and outcome. That is what lets Ray spread evaluations over many
machines while one process writes the SQLite file.

An outcome is ``("ok", JobResult)`` (:meth:`nas_core.jobresult.JobResult.of` of what the handler
returned; progress reports travel as :meth:`nas_core.jobresult.Progress.to_dict`); ``("error", (message, traceback))`` (the handler
failed: the job fails with the message, the traceback goes to the worker's log);
``("stopped", message)`` (the handler honoured ``should_stop``); or ``("lost", message)``
(the executor lost the task, e.g. a Ray node died: the worker requeues the job).

Pointing the worker at a Ray cluster::

    ray start --head --port 6379                 # on the head node
    ray start --address HEAD:6379                # on every other node
    python -m nas_core worker --db data/equinas.db --executor ray --ray-address HEAD:6379 \
        --num-cpus 4 --num-gpus 1                # resources each evaluation asks for

The nodes must be able to import ``nas_core`` and read the data set folder named in
each job: the same checkout and data on a shared file system (the worker hands its
checkout's path to the tasks as PYTHONPATH), EquiNAS installed on every node, or
``--ray-working-dir .`` to ship the code (data paths must still resolve on the nodes).
Without ``--ray-address`` a local Ray instance is started (``--ray-local-cpus N``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import traceback
from abc import ABC, abstractmethod
from typing import Any

from nas_core.alloc import release_memory, tune_for_training
from nas_core.errors import UserError
from nas_core.jobresult import JobResult, MalformedResult, Progress
from nas_core.jobs import JobStopped, error_message, load_handler

log = logging.getLogger(__name__)

Outcome = tuple[str, Any]


class ExecutorError(UserError):
    """The executor cannot start (e.g. Ray is not reachable at the given address)."""


def _run_handler(target: str, payload: dict[str, Any], progress: Any, should_stop: Any) -> Outcome:
    """Run one handler and turn whatever happens into an outcome tuple (no exception escapes)."""
    try:
        handler = load_handler(target)
        result = handler(payload, progress, should_stop)
    except JobStopped as exc:
        return ("stopped", str(exc) or "stopped on request")
    except Exception as exc:  # a handler's failure is data for the job row, not a worker crash
        tb = traceback.format_exc()
        if should_stop():
            return ("stopped", error_message(exc))
        return ("error", (error_message(exc), tb))
    try:
        return ("ok", JobResult.of(result))
    except MalformedResult as exc:
        return ("error", (f"handler {target} returned {exc}", ""))


class Execution(ABC):
    """One job submitted to an executor."""

    job_id: int

    @abstractmethod
    def drain_progress(self) -> list[dict[str, Any]]:
        """Progress reports since the last call, oldest first."""

    @abstractmethod
    def done(self) -> bool:
        """True once the outcome is available."""

    @abstractmethod
    def outcome(self) -> Outcome:
        """The outcome (call only when :meth:`done`)."""

    @abstractmethod
    def request_stop(self) -> None:
        """Make the handler's ``should_stop()`` return True."""

    def abandon(self) -> None:
        """Stop waiting for this execution (best effort to free its resources)."""
        return None


class Executor(ABC):
    """Runs handlers for the worker. ``capacity`` = how many jobs may run at once."""

    name: str = "base"
    capacity: int = 1

    @abstractmethod
    def submit(self, job_id: int, target: str, payload: dict[str, Any]) -> Execution:
        """Start the handler ``target`` on ``payload``; returns at once."""

    def close(self) -> None:
        """Release the executor's resources."""
        return None


# ---------------------------------------------------------------------------- local


class _LocalExecution(Execution):
    def __init__(self, job_id: int, target: str, payload: dict[str, Any]):
        self.job_id = job_id
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._outcome: Outcome | None = None
        self._thread = threading.Thread(
            target=self._main, args=(target, payload), name=f"job-{job_id}", daemon=True
        )
        self._thread.start()

    def _main(self, target: str, payload: dict[str, Any]) -> None:
        self._outcome = _run_handler(target, payload, lambda d: self._queue.put(Progress.from_report(d).to_dict()), self._stop.is_set)

    def drain_progress(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def done(self) -> bool:
        return self._outcome is not None

    def outcome(self) -> Outcome:
        assert self._outcome is not None, "outcome() before done()"
        return self._outcome

    def request_stop(self) -> None:
        self._stop.set()


class LocalExecutor(Executor):
    """Runs handlers in a thread of the worker process, one job at a time by default.

    The thread keeps the worker's main thread free to heartbeat and write
    progress while a handler trains.
    """

    name = "local"

    def __init__(self, concurrency: int = 1):
        """``concurrency``: jobs at once (1 is right for a laptop: training already uses the cores)."""
        if concurrency < 1:
            raise ExecutorError(f"concurrency must be at least 1, got {concurrency}")
        self.capacity = concurrency

    def submit(self, job_id: int, target: str, payload: dict[str, Any]) -> Execution:
        return _LocalExecution(job_id, target, payload)


# ---------------------------------------------------------------------------- Ray


def _code_path() -> str:
    """This checkout's root plus the caller's PYTHONPATH, for Ray workers on a shared file system."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


def _ray_entry(target: str, payload: dict[str, Any], job_id: int, hub: Any) -> Outcome:
    """Body of the Ray task: run the handler, stream progress to the hub actor."""
    import ray  # inside the task: runs on a cluster node

    last_check = [0.0, False]

    def progress(report: Progress | dict[str, Any]) -> None:
        hub.report.remote(job_id, Progress.from_report(report).to_dict())  # fire and forget: never slow the training loop

    def should_stop() -> bool:
        # Ask the hub at most twice a second; a handler may call this every batch.
        now = time.monotonic()
        if now - last_check[0] > 0.5:
            last_check[0] = now
            last_check[1] = bool(ray.get(hub.should_stop.remote(job_id)))
        return bool(last_check[1])

    tune_for_training()  # a Ray worker process trains: the allocator's training settings (nas_core.alloc)
    outcome = _run_handler(target, payload, progress, should_stop)
    release_memory()
    # Barrier: the hub runs this task's calls in order, so once this answers every report has
    # arrived, and the driver can collect the last ones when it sees the task done.
    ray.get(hub.should_stop.remote(job_id))
    return outcome


class _ProgressHub:
    """Ray actor: the mailbox between remote tasks and the one process that writes the store."""

    def __init__(self) -> None:
        self.reports: dict[int, list[dict[str, Any]]] = {}
        self.stops: set[int] = set()

    def report(self, job_id: int, report: dict[str, Any]) -> None:
        self.reports.setdefault(job_id, []).append(report)

    def drain(self, job_id: int) -> list[dict[str, Any]]:
        return self.reports.pop(job_id, [])

    def request_stop(self, job_id: int) -> None:
        self.stops.add(job_id)

    def should_stop(self, job_id: int) -> bool:
        return job_id in self.stops

    def forget(self, job_id: int) -> None:
        self.reports.pop(job_id, None)
        self.stops.discard(job_id)


class _RayExecution(Execution):
    def __init__(self, executor: RayExecutor, job_id: int, ref: Any):
        self.job_id = job_id
        self._ex = executor
        self._ref = ref
        self._outcome: Outcome | None = None
        self._tail: list[dict[str, Any]] = []  # reports collected when the task ended

    def drain_progress(self) -> list[dict[str, Any]]:
        if self._outcome is not None:
            out, self._tail = self._tail, []
            return out
        return list(self._ex.ray.get(self._ex.hub.drain.remote(self.job_id)))

    def done(self) -> bool:
        if self._outcome is not None:
            return True
        ready, _ = self._ex.ray.wait([self._ref], timeout=0)
        if not ready:
            return False
        try:
            self._outcome = tuple(self._ex.ray.get(self._ref))  # type: ignore[assignment]
        except Exception as exc:  # the task never produced an outcome: node died, task cancelled
            self._outcome = ("lost", f"Ray lost the task ({type(exc).__name__}: {exc})")
        # the last reports (after the worker's latest drain) still count: keep them, then forget
        self._tail = list(self._ex.ray.get(self._ex.hub.drain.remote(self.job_id)))
        self._ex.hub.forget.remote(self.job_id)
        return True

    def outcome(self) -> Outcome:
        assert self._outcome is not None, "outcome() before done()"
        return self._outcome

    def request_stop(self) -> None:
        self._ex.hub.request_stop.remote(self.job_id)

    def abandon(self) -> None:
        try:
            self._ex.ray.cancel(self._ref, force=True)
        except Exception as exc:  # best effort: the task may already have ended
            log.debug("ray.cancel of job %s: %s", self.job_id, exc)


class RayExecutor(Executor):
    """Submits each job as a ``ray.remote`` task with its own CPU/GPU request.

    Connects to an existing cluster (``address``, e.g. ``ray://head:10001`` or
    ``auto``) or starts a local instance when ``address`` is None. Handlers
    must be importable on the cluster's nodes: install EquiNAS there, or pass
    ``working_dir`` to ship this checkout (Ray's ``runtime_env``).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        concurrency: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
        working_dir: str | None = None,
    ):
        """Start or join Ray.

        Args:
            address: cluster address; None starts a local instance.
            num_cpus: CPUs each task requests.
            num_gpus: GPUs each task requests (fractions share a GPU).
            concurrency: jobs in flight at once; default = cluster CPUs // num_cpus.
            init_kwargs: extra ``ray.init`` arguments (e.g. ``num_cpus`` of a local instance).
            working_dir: ship this folder to the nodes as the tasks' working directory.
        """
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is pinned in requirements.txt
            raise ExecutorError("the Ray executor needs the 'ray' package: pip install ray") from exc
        self.ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            kwargs.update(init_kwargs or {})
            runtime_env = dict(kwargs.pop("runtime_env", None) or {})
            if working_dir:
                runtime_env["working_dir"] = working_dir
            else:
                # Tasks import nas_core from this checkout where the node shares its file system
                # (a local instance, NFS); elsewhere the path is absent and EquiNAS must be installed.
                env_vars = dict(runtime_env.get("env_vars", {}))
                env_vars.setdefault("PYTHONPATH", _code_path())
                runtime_env["env_vars"] = env_vars
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            try:
                ray.init(address=address, **kwargs)
            except Exception as exc:  # ConnectionError and friends: say where we tried
                where = address or "a new local instance"
                raise ExecutorError(f"cannot start Ray at {where}: {exc}; check --ray-address") from exc
            self._owns_ray = True
        if num_cpus < 0 or num_gpus < 0:
            raise ExecutorError("num_cpus and num_gpus per task must not be negative")
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        if concurrency is None:
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            concurrency = max(1, int(cpus // self.num_cpus)) if self.num_cpus > 0 else 4
        if concurrency < 1:
            raise ExecutorError(f"concurrency must be at least 1, got {concurrency}")
        self.capacity = int(concurrency)
        self.hub = ray.remote(num_cpus=0)(_ProgressHub).remote()
        # max_retries=0: the store, not Ray, decides about retries (attempts are counted there).
        self._task = ray.remote(max_retries=0)(_ray_entry)

    def submit(self, job_id: int, target: str, payload: dict[str, Any]) -> Execution:
        ref = self._task.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus).remote(
            target, payload, job_id, self.hub
        )
        return _RayExecution(self, job_id, ref)

    def close(self) -> None:
        try:
            self.ray.kill(self.hub)
        except Exception as exc:  # best effort at shutdown
            log.debug("killing the progress hub: %s", exc)
        if self._owns_ray:
            self.ray.shutdown()


def make_executor(
    kind: str,
    *,
    ray_address: str | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    concurrency: int | None = None,
    ray_init: dict[str, Any] | None = None,
    working_dir: str | None = None,
) -> Executor:
    """Build the executor named ``kind`` (local | ray)."""
    if kind == "local":
        return LocalExecutor(concurrency or 1)
    if kind == "ray":
        return RayExecutor(ray_address, num_cpus, num_gpus, concurrency, ray_init, working_dir)
    raise ExecutorError(f"unknown executor {kind!r}; use local or ray")


__all__ = ["Execution", "Executor", "ExecutorError", "LocalExecutor", "RayExecutor", "make_executor"]
