"""The contract every Executor passes: :class:`ExecutorTestCase`, one test method per rule.

Rules: an executor has a ``name`` and a ``capacity`` of at least one; a submitted handler's result
comes back as ``("ok", JobResult)``; progress reports come back oldest first, each the flat form of
a :class:`~nas_core.jobresult.Progress`; a handler's
:class:`~nas_core.errors.UserError` is ``("error", (message, traceback))`` with the message; a bug
is an error whose traceback names it; a handler whose result is no JobResult, Metrics or mapping,
or that does not exist, is an error outcome (never an exception in the worker); ``request_stop`` makes a cooperative handler
end as ``("stopped", message)``; ``capacity`` jobs run at once.

A subclass implements :meth:`ExecutorTestCase.make_executor`; one executor serves the whole class
(a Ray instance is slow to start) and is closed after it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from nas_core.executors import Execution, Executor
from nas_core.jobresult import JobResult, Progress
from nas_core.testing import handlers


class ExecutorTestCase:
    """Subclass as ``TestMyExecutor(ExecutorTestCase)`` and implement :meth:`make_executor`."""

    #: Seconds any one job may take before a rule fails.
    timeout_s: float = 120.0

    def make_executor(self) -> Executor:
        """The executor under test (called once per class)."""
        raise NotImplementedError("implement make_executor() to return an executor")

    @property
    def executor(self) -> Executor:
        """The class's executor (built on first use)."""
        cls = type(self)
        ex = cls.__dict__.get("_executor")
        if ex is None:
            ex = self.make_executor()
            cls._executor = ex
        return ex

    @classmethod
    def teardown_class(cls) -> None:
        """Close the class's executor."""
        ex = cls.__dict__.get("_executor")
        if ex is not None:
            ex.close()
            cls._executor = None

    # --- helpers ----------------------------------------------------------------------------
    def wait(self, execution: Execution) -> tuple[tuple[str, Any], list[dict[str, Any]]]:
        """Wait for ``execution``; returns its outcome and every progress report, oldest first."""
        reports: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.timeout_s
        while not execution.done():
            reports += execution.drain_progress()
            assert time.monotonic() < deadline, f"job {execution.job_id} did not end in {self.timeout_s} s"
            time.sleep(0.02)
        reports += execution.drain_progress()
        return execution.outcome(), reports

    def run_job(self, target: str, payload: dict[str, Any], job_id: int = 1
                ) -> tuple[tuple[str, Any], list[dict[str, Any]]]:
        """Submit one job and wait for it."""
        return self.wait(self.executor.submit(job_id, target, payload))

    # --- one method per rule ----------------------------------------------------------------
    def test_has_a_name_and_a_capacity(self) -> None:
        ex = self.executor
        assert isinstance(ex, Executor)
        assert isinstance(ex.name, str) and ex.name
        assert isinstance(ex.capacity, int) and ex.capacity >= 1

    def test_a_handler_result_comes_back_ok(self) -> None:
        outcome, _ = self.run_job(handlers.STEPS, {"steps": 2, "echo": "hello"})
        assert outcome[0] == "ok", outcome
        assert isinstance(outcome[1], JobResult) and outcome[1].kind == "data", outcome
        assert outcome[1].record["steps"] == 2 and outcome[1].record["echo"] == "hello"

    def test_progress_comes_back_oldest_first(self) -> None:
        outcome, reports = self.run_job(handlers.STEPS, {"steps": 4}, job_id=2)
        assert outcome[0] == "ok", outcome
        assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
        assert reports[-1]["fraction"] == 1.0
        assert all(Progress.from_report(r).message for r in reports)  # every report reads as a Progress

    def test_a_user_error_is_an_error_outcome_with_its_message(self) -> None:
        outcome, _ = self.run_job(handlers.STEPS, {"steps": 1, "fail": "bad spec"}, job_id=3)
        assert outcome[0] == "error", outcome
        message, _tb = outcome[1]
        assert message == "bad spec"

    def test_a_bug_is_an_error_outcome_with_its_traceback(self) -> None:
        outcome, _ = self.run_job(handlers.STEPS, {"steps": 1, "crash": True}, job_id=4)
        assert outcome[0] == "error", outcome
        message, tb = outcome[1]
        assert "ZeroDivisionError" in tb and message

    def test_a_result_that_is_not_a_dict_is_an_error(self) -> None:
        outcome, _ = self.run_job(handlers.NOT_A_DICT, {}, job_id=5)
        assert outcome[0] == "error" and "must return a JobResult" in outcome[1][0], outcome

    def test_a_missing_handler_is_an_error_not_a_crash(self) -> None:
        outcome, _ = self.run_job(handlers.MISSING, {}, job_id=6)
        assert outcome[0] == "error" and "no_such_handler" in outcome[1][0], outcome

    def test_request_stop_stops_a_cooperative_handler(self) -> None:
        execution = self.executor.submit(7, handlers.STEPS, {"steps": 10_000, "step_s": 0.01})
        deadline = time.monotonic() + self.timeout_s
        seen: list[dict[str, Any]] = []
        while not seen:
            seen += execution.drain_progress()
            assert time.monotonic() < deadline, "the handler never reported progress"
            time.sleep(0.02)
        execution.request_stop()
        outcome, _ = self.wait(execution)
        assert outcome[0] == "stopped", outcome

    def test_capacity_jobs_run_at_once(self) -> None:
        n = min(self.executor.capacity, 4)
        if n < 2:
            pytest.skip("capacity 1: jobs run one at a time")
        # long enough to outlast a slow worker start on a loaded machine (Ray's second worker took
        # over 20 s there); every job is stopped as soon as all have started
        runs = [self.executor.submit(10 + i, handlers.STEPS, {"steps": 100_000, "step_s": 0.01})
                for i in range(n)]
        deadline = time.monotonic() + self.timeout_s
        started: set[int] = set()
        while len(started) < n:
            started |= {r.job_id for r in runs if r.drain_progress()}
            assert not any(r.done() for r in runs), "a job ended before the others started"
            assert time.monotonic() < deadline, f"only {len(started)} of {n} jobs started at once"
            time.sleep(0.02)
        for r in runs:
            r.request_stop()
        assert all(self.wait(r)[0][0] == "stopped" for r in runs)
