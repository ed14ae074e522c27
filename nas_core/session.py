"""The step state machine of a search run: propose -> approve / edit / reject -> evaluate -> record.

Owns :class:`Session` (one run, driven one step at a time behind the human
approval gate), :func:`make_designer` (engine name -> Designer) and the rules of
what may happen when. What a new run is stored with (its DatasetRef, the data
set's facts) and where its weights go is :mod:`nas_core.run_setup`. All state
lives in the store: a Session object holds only the run id and the store, so any
step resumes after a restart, and two browser tabs cannot approve one candidate
twice (the store's compare-and-set refuses the second).

Life cycle (statuses are the store's):

- ``propose()`` opens iteration N (status ``proposing``), asks the engine's
  designer, stores its proposals as ``proposed`` candidates and moves the
  iteration to ``waiting``. A designer failure (e.g. the LLM endpoint) closes
  the iteration as ``failed`` with the message, and raises it.
- ``approve(cid)`` queues one evaluation job (proposed -> queued, one
  transaction). ``edit(cid, spec)`` validates the new spec, stores it as a new
  ``proposed`` candidate of origin ``human-edit`` and rejects the original with
  "edited into #new". ``reject(cid, reason)`` stores the reason as feedback; the
  next prompt carries it.
- The worker moves jobs to running and done/failed; :meth:`poll` closes an
  iteration once none of its candidates waits or runs.

Refused (a :class:`SessionError` or the store's IllegalTransition, with a
message): proposing while proposals wait, proposing while evaluations run
(unless ``allow_running``), proposing past the budget, approving anything that
is not ``proposed`` (a rejected one, or the same one twice), a candidate of
another run.

Baselines (FL-NAS Table I) are stored as candidates of origin ``baseline`` with
a placeholder spec: zero blocks (never valid under any Choices, so no designer
can propose it) and a stem width derived from the name (so each has its own
canonical key). Designers never see them in their history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas_core import engines, rungs
from nas_core.data.ref import resolve as resolve_ref
from nas_core.designers.base import DesignContext, Designer
from nas_core.designers.llm.prompt import PromptParts, RenderedPrompt, check_parts, render_for
from nas_core.designers.validation import spec_problems
from nas_core.errors import UserError
from nas_core.evaluator import EvalRequest
from nas_core.jobresult import Progress
from nas_core.records import Candidate, Proposal

# SessionError, fill_dataset_facts and weights_path moved to run_setup; importable from here as before.
from nas_core.run_setup import (
    SessionError,
    prepare_config,
    ref_of_stored_run,
    weights_path,
)
from nas_core.run_setup import fill_dataset_facts as fill_dataset_facts
from nas_core.runconfig import RunConfig
from nas_core.selection import Priorities, best_candidate, rank_candidates
from nas_core.space import ArchSpec, HeadSpec, SpecError, StemSpec
from nas_core.supernet import jobs as supernet_jobs

if TYPE_CHECKING:
    from nas_core.store import Store

log = logging.getLogger(__name__)

PENDING = ("proposed",)
IN_FLIGHT = ("queued", "running")
TERMINAL = ("done", "failed", "rejected", "cancelled")
OPEN_ITERATION = ("proposing", "waiting", "evaluating")
#: How many feedback notes the prompt carries (newest kept).
FEEDBACK_K = 10
# Runs with a proposal in progress in this process (Streamlit tabs share one process).
_PROPOSING: set[tuple[str, int]] = set()
_PROPOSING_LOCK = threading.Lock()

#: Settings that may change during a run (they do not change how candidates are measured).
MUTABLE_SETTINGS = frozenset({
    "name", "prompt", "priorities", "llm", "per_iteration", "iterations", "budget", "auto_approve",
    "constraints", "objectives", "population", "algorithm", "baselines",
})


def make_designer(
    config: RunConfig, *, api_key: str | None = None, on_call: Callable[[Any], None] | None = None
) -> Designer:
    """The designer of ``config.engine``, built by its factory in the engine registry.

    Raises:
        nas_core.engines.EngineError: the engine is not registered.
    """
    return engines.make_designer(config, api_key=api_key, on_call=on_call)


def baseline_spec(name: str) -> ArchSpec:
    """The placeholder spec a baseline candidate is stored with (see the module docstring)."""
    width = 1000 + int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
    return ArchSpec(stem=StemSpec(out_channels=width, kernel=1, stride=1), blocks=(), head=HeadSpec())


@dataclass(frozen=True)
class SessionState:
    """Where a run stands, for the CLI and the UI."""

    run_id: int
    iteration: int  # number of the latest iteration (0 = none yet)
    iteration_status: str  # its status ("" when none)
    pending: tuple[int, ...]  # candidates waiting for approval
    in_flight: tuple[int, ...]  # queued or running
    measured: int  # searched candidates with metrics
    used: int  # searched candidates that count against the budget
    budget: int | None
    best_id: int | None
    can_propose: bool
    reason: str  # why not, when can_propose is False


@dataclass(frozen=True)
class StepResult:
    """What :meth:`Session.step_auto` did."""

    action: str  # approved | proposed | waiting | finished | failed
    candidates: tuple[int, ...] = ()
    message: str = ""


class Session:
    """One run, stepped through its store.

    Args:
        store: an open :class:`nas_core.store.Store`.
        run_id: the run.
        api_key: the LLM key, kept in memory only.
        designer: use this designer instead of the run's engine (tests, notebooks).
    """

    def __init__(self, store: Store, run_id: int, *, api_key: str | None = None, designer: Designer | None = None):
        self.store = store
        self.run_id = int(run_id)
        self._api_key = api_key
        self._designer = designer
        self.store.get_run(self.run_id)  # NotFound early, with the store's message

    # ------------------------------------------------------------------ creation

    @classmethod
    def create_run(
        cls, store: Store, config: RunConfig, *, actor: str = "", api_key: str | None = None,
        designer: Designer | None = None,
    ) -> Session:
        """Create a run with ``config`` (data set facts filled in) and return its session.

        Raises:
            UserError: the data set cannot be read, or a setting is invalid.
        """
        config = prepare_config(store, config)
        ref = config.dataset_ref
        # Linked by name when registered (the run then lists under its data set), else the text given.
        run = store.create_run(config.name, config.engine, ref.name if ref and ref.name else config.dataset,
                               config.to_dict(), actor=actor)
        return cls(store, run.id, api_key=api_key, designer=designer)

    # ------------------------------------------------------------------ reading

    @property
    def run(self) -> Any:
        """The run record."""
        return self.store.get_run(self.run_id)

    @property
    def config(self) -> RunConfig:
        """The run's settings.

        A run stored before runs kept a :class:`~nas_core.data.ref.DatasetRef` (only a folder path)
        gets one here, from its registered data set or its folder, written back once; when its data
        cannot be read any more it stays path-only and its jobs report the reader's message.
        """
        run = self.run
        cfg = RunConfig.from_dict(run.config)
        if cfg.dataset_ref is not None:
            return cfg
        try:
            ref = ref_of_stored_run(self.store, run, cfg)
        except UserError as exc:
            log.debug("run %d keeps its path-only data set %r: %s", self.run_id, cfg.dataset, exc)
            return cfg
        cfg = cfg.replace(dataset_ref=ref)
        self.store.update_run(self.run_id, config=cfg.to_dict(), actor="migration",
                              detail=f"data set reference added: {ref.describe()}")
        return cfg

    def update_settings(self, actor: str = "", **changes: Any) -> RunConfig:
        """Change run settings between steps (e.g. the prompt parts or the priorities).

        Settings that decide how candidates are measured (data set, Choices, training,
        Env, evaluation mode, engine, seed, device) are fixed once the run has
        candidates, so every candidate stays comparable.

        Raises:
            SessionError: a fixed setting, or an unknown one.
            UserError: an invalid value (the setting's own message).
        """
        cfg = self.config
        unknown = set(changes) - {f.name for f in dataclasses.fields(RunConfig)}
        if unknown:
            raise SessionError(f"unknown run setting(s) {sorted(unknown)}")
        fixed = set(changes) - MUTABLE_SETTINGS
        if fixed and self.candidates():
            raise SessionError(
                f"{', '.join(sorted(fixed))} cannot change once a run has candidates (they would no longer "
                "be comparable); start a new run instead"
            )
        if "prompt" in changes and not isinstance(changes["prompt"], PromptParts):
            # A partial mapping edits only the parts it names.
            changes["prompt"] = PromptParts.from_dict({**cfg.prompt.to_dict(), **changes["prompt"]})
        if "priorities" in changes and not isinstance(changes["priorities"], Priorities):
            changes["priorities"] = Priorities.from_dict(changes["priorities"])
        if "prompt" in changes:
            check_parts(changes["prompt"])
        if "dataset" in changes and "dataset_ref" not in changes:
            changes["dataset_ref"] = resolve_ref(self.store, changes["dataset"])
        new = cfg.replace(**changes)
        self.store.update_run(self.run_id, config=new.to_dict(), actor=actor,
                              detail="settings changed: " + ", ".join(sorted(changes)))
        return new

    def candidates(self, status: Any = None) -> list[Candidate]:
        """The run's candidates, oldest first (with metrics)."""
        return self.store.list_candidates(self.run_id, status=status)

    def searched(self) -> list[Candidate]:
        """Candidates the engines and people proposed (no baselines)."""
        return [c for c in self.candidates() if c.origin != "baseline"]

    def best(self) -> Candidate | None:
        """GetBestMetrics over the searched candidates, by the run's priorities."""
        return best_candidate(self.searched(), self.config.priorities)

    def ranked(self, limit: int | None = None) -> list[Candidate]:
        """Measured searched candidates (or the first ``limit``), best first."""
        return rank_candidates(self.searched(), self.config.priorities, limit)

    def _latest_iteration(self) -> Any:
        its = self.store.list_iterations(self.run_id)
        return its[-1] if its else None

    def state(self) -> SessionState:
        """Where the run stands, and whether a proposal may be asked for now."""
        cfg = self.config
        cands = self.candidates()
        searched = [c for c in cands if c.origin != "baseline"]
        pending = tuple(c.id for c in searched if c.status in PENDING)
        in_flight = tuple(c.id for c in cands if c.status in IN_FLIGHT)
        used = sum(1 for c in searched if c.status not in ("rejected", "proposed", "cancelled"))
        it = self._latest_iteration()
        best = best_candidate(searched, cfg.priorities)
        reason = ""
        if pending:
            reason = (f"{len(pending)} proposal(s) wait for approval ({', '.join(f'#{i}' for i in pending)}); "
                      "approve, edit or reject them first")
        elif in_flight:
            reason = (f"{len(in_flight)} evaluation(s) are queued or running ({', '.join(f'#{i}' for i in in_flight)}); "
                      "wait for their results")
            if not any(w.alive for w in self.store.worker_status()):
                reason += "; no worker is alive to run them: start one (python -m nas_core worker --db DB)"
        elif cfg.budget is not None and used >= cfg.budget:
            reason = f"the budget of {cfg.budget} evaluations is used up"
        return SessionState(
            run_id=self.run_id,
            iteration=0 if it is None else it.number,
            iteration_status="" if it is None else it.status,
            pending=pending,
            in_flight=in_flight,
            measured=sum(1 for c in searched if c.metrics is not None),
            used=used,
            budget=cfg.budget,
            best_id=None if best is None else best.id,
            can_propose=not reason,
            reason=reason,
        )

    def feedback(self) -> tuple[str, ...]:
        """The human notes the next prompt carries (newest ``FEEDBACK_K``), oldest first."""
        notes = []
        for f in self.store.list_feedback(self.run_id)[-FEEDBACK_K:]:
            where = f"#{f.candidate_id}" if f.candidate_id is not None else f"iteration {f.iteration}"
            label = {"reject": "rejected", "edit": "edited"}.get(f.kind, f.kind)
            notes.append(f"{label} {where}: {f.text}")
        return tuple(notes)

    def context(self, n: int | None = None, iteration: int | None = None) -> DesignContext:
        """The design context the engine sees for the next proposal."""
        cfg = self.config
        if iteration is None:
            it = self._latest_iteration()
            iteration = 0 if it is None else it.number
        if n is None:
            n = cfg.per_iteration
            if engines.get_engine(cfg.engine).min_objectives >= 2 and not any(c.metrics for c in self.searched()):
                n = max(n, cfg.population)  # the random initial population comes first
        return DesignContext(
            choices=cfg.choices,
            input_shape=cfg.input_shape,
            n_classes=cfg.n_classes or 2,
            history=tuple(self.searched()),
            n=n,
            iteration=iteration,
            seed=cfg.seed,
            priorities=cfg.priorities,
            objectives=cfg.objectives,
            constraints=cfg.constraints,
            env=cfg.env,
            feedback=self.feedback(),
            dataset_summary=cfg.dataset_summary,
            evaluation=cfg.evaluation,
        )

    def next_prompt(self) -> RenderedPrompt:
        """The exact prompt the LLM designer would send next (any engine; shown before sending)."""
        cfg = self.config
        return render_for(self.context(), cfg.prompt, cfg.llm.history_k)

    # ------------------------------------------------------------------ steps

    def designer(self) -> Designer:
        """The run's designer (LLM calls recorded in the store)."""
        if self._designer is not None:
            return self._designer
        return make_designer(self.config, api_key=self._api_key, on_call=self._record_call)

    def _record_call(self, call: Any) -> None:
        it = self._latest_iteration()
        self.store.add_llm_call(
            self.run_id, None if it is None else it.number, call.prompt,
            [{"role": r, "content": c} for r, c in call.messages], call.raw_answer, call.model,
            call.tokens_in, call.tokens_out, call.duration_s, call.error,
            decoding=getattr(call, "decoding", ""),
        )

    def propose(
        self, actor: str = "", *, allow_running: bool = False, progress: Callable[[Progress], None] | None = None
    ) -> list[Candidate]:
        """Ask the engine for the next proposals and store them as ``proposed``.

        ``progress`` receives a :class:`~nas_core.jobresult.Progress` from designers with a long inner
        search (LINAS's ``on_progress``: fraction of the inner evaluations done).

        Raises:
            SessionError: proposals wait, evaluations run (unless ``allow_running``), or the budget is used.
            UserError: the designer failed (recorded on the iteration as ``failed``).
        """
        key = (str(self.store.path), self.run_id)
        with _PROPOSING_LOCK:
            if key in _PROPOSING:
                raise SessionError("a proposal for this run is being made right now (another tab?); "
                                   "wait for it to appear")
            _PROPOSING.add(key)
        try:
            return self._propose(actor, allow_running, progress)
        finally:
            with _PROPOSING_LOCK:
                _PROPOSING.discard(key)

    def _propose(
        self, actor: str, allow_running: bool, progress: Callable[[Progress], None] | None = None
    ) -> list[Candidate]:
        self.poll()
        # BEGIN IMMEDIATE: two processes proposing at once serialize here, and the second sees the first.
        with self.store.transaction():
            st = self.state()
            if not st.can_propose and not (allow_running and not st.pending and st.in_flight
                                            and "budget" not in st.reason):
                raise SessionError(f"cannot propose now: {st.reason}")
            it = self._latest_iteration()
            if it is not None and it.status == "proposing" and not self.store.list_candidates(
                self.run_id, iteration=it.number
            ):
                owner = self._proposer(it.number)
                if owner is not None and owner != os.getpid() and _pid_alive(owner):
                    raise SessionError(f"iteration {it.number} is being proposed by another process "
                                       f"(pid {owner}); wait for its proposals")
                # A crash between opening an iteration and storing its proposals left it empty: reuse it.
                number = it.number
            else:
                number = self.store.start_iteration(self.run_id, actor=self._stamp(actor)).number
        cfg = self.config
        ctx = self.context(iteration=number - 1)
        if cfg.budget is not None:
            ctx = dataclasses.replace(ctx, n=max(1, min(ctx.n, cfg.budget - st.used)))
        designer = self.designer()
        if progress is not None and hasattr(designer, "on_progress"):
            def inner(fraction: float) -> None:
                progress(Progress(fraction, f"{designer.name}: inner search {100 * fraction:.0f}%",
                                  {"stage": "inner search", "iteration": number}))

            designer.on_progress = inner
        try:
            proposals = designer.propose(ctx)
        except UserError as exc:
            self.store.finish_iteration(self.run_id, number, status="failed", error=str(exc), actor=actor)
            raise
        except Exception as exc:  # a bug in a designer: record it, keep the traceback
            self.store.finish_iteration(self.run_id, number, status="failed",
                                        error=f"{designer.name} failed: {type(exc).__name__}: {exc}", actor=actor)
            raise
        # Validate outside the write transaction (building costs takes a moment).
        valid, rejected = [], []
        for p in proposals[: ctx.n]:
            problems = spec_problems(p.spec, ctx)
            if problems:  # a designer bug must not reach the queue; say what it was
                log.warning("%s proposed an invalid spec: %s", designer.name, "; ".join(problems))
                rejected.append(problems[0])
            else:
                valid.append(p)
        report = getattr(designer, "last_report", None)  # LINAS: predictor quality of this iteration
        report_extra = dict(report.to_extra()) if report is not None and hasattr(report, "to_extra") else {}
        stored = []
        with self.store.transaction():
            for p in valid:
                if self.store.find_candidate(self.run_id, p.spec.key) is not None:
                    continue
                extra = dict(report_extra)
                if p.predicted:
                    extra["predicted"] = dict(p.predicted)
                stored.append(self.store.add_candidate(self.run_id, number, p, actor=actor or designer.name,
                                                       extra=extra or None))
        if not stored:
            msg = f"the {designer.name} designer proposed nothing new and valid this iteration"
            if rejected:
                msg += f" ({len(rejected)} invalid, e.g. {rejected[0]})"
            self.store.finish_iteration(self.run_id, number, status="failed", error=msg, actor=actor)
            raise SessionError(msg + "; the search space may be exhausted: widen the Choices or stop")
        self.store.set_iteration_status(self.run_id, number, "waiting", actor=actor)
        return stored

    @staticmethod
    def _stamp(actor: str) -> str:
        return f"{actor or 'user'} [pid {os.getpid()}@{socket.gethostname()}]"

    def _proposer(self, number: int) -> int | None:
        """Pid of the process that opened iteration ``number`` on this host (None if elsewhere/unknown)."""
        for e in reversed(self.store.events(run_id=self.run_id, limit=200)):
            if e.entity == "iteration" and e.to_status == "proposing" and e.detail == f"iteration {number}":
                m = re.search(r"\[pid (\d+)@(.+)\]$", e.actor or "")
                if m and m.group(2) == socket.gethostname():
                    return int(m.group(1))
                return None
        return None

    def _own(self, cid: int) -> Candidate:
        c = self.store.get_candidate(cid)
        if c.run_id != self.run_id:
            raise SessionError(f"candidate {cid} belongs to run {c.run_id}, not to run {self.run_id}")
        return c

    def job_for(self, candidate: Candidate) -> tuple[str, dict[str, Any]]:
        """(job kind, payload) that evaluates ``candidate`` under the run's evaluation mode."""
        cfg = self.config
        if candidate.origin == "baseline" or cfg.evaluation == "scratch":
            arch: Any = f"baseline:{candidate.baseline}" if candidate.origin == "baseline" else candidate.spec
            req = EvalRequest(dataset=cfg.dataset_ref or cfg.dataset, arch=arch, train=cfg.train, env=cfg.env, device=cfg.device,
                              weights_out=str(weights_path(self.store, self.run_id, candidate.id)))
            return "evaluate", req.to_dict()
        return "supernet_measure", dict(supernet_jobs.make_payload(self.run, candidate.spec, store=self.store))

    def approve(self, cid: int, actor: str = "") -> Any:
        """Queue the candidate's evaluation (proposed -> queued + one job, atomically).

        Raises:
            IllegalTransition: the candidate is not waiting for approval (rejected, or approved already).
        """
        c = self._own(cid)
        if c.status != "proposed":
            raise SessionError(
                f"candidate #{cid} is {c.status}; only a proposed candidate can be approved"
                + (" (it was already approved)" if c.status in IN_FLIGHT + ("done", "failed") else "")
            )
        kind, payload = self.job_for(c)
        if kind == "evaluate" and c.origin != "baseline":
            # successive halving: a cheap, preliminary rung first
            if rungs.active(self.config):
                kind, payload = rungs.rung_job(self.config, payload, 0)
        job = self.store.approve(cid, actor or "user", kind, payload)
        self._update_iteration(c.iteration, actor)
        return job

    def reject(self, cid: int, reason: str, actor: str = "") -> Candidate:
        """Reject a proposal with a written reason (kept as feedback for the next prompt).

        Raises:
            SessionError: no reason given, or the candidate is not waiting for approval.
        """
        reason = (reason or "").strip()
        if not reason:
            raise SessionError("say why you reject it: the reason goes into the next prompt")
        c = self._own(cid)
        with self.store.transaction():
            out = self.store.transition(cid, ["proposed"], "rejected", actor or "user", reason)
            self.store.add_feedback(self.run_id, "reject", reason, actor or "user", candidate_id=cid,
                                    iteration=c.iteration)
        self._update_iteration(c.iteration, actor)
        return out

    def edit(self, cid: int, new_spec: ArchSpec | dict, actor: str = "", note: str = "") -> Candidate:
        """Replace a proposal by an edited spec: the edit becomes a new proposal (origin ``human-edit``).

        Raises:
            SpecError: the edited spec is invalid (every problem listed); nothing is changed.
            SessionError / IllegalTransition: the original is not waiting for approval.
            DuplicateCandidate: the run already has that network.
        """
        c = self._own(cid)
        spec = ArchSpec.from_dict(new_spec) if isinstance(new_spec, dict) else new_spec
        if c.status != "proposed":
            raise SessionError(f"candidate #{cid} is {c.status}; only a proposed candidate can be edited")
        problems = spec_problems(spec, self.context())
        if problems:
            raise SpecError(problems)
        if spec.key == c.spec.key:
            raise SessionError(f"the edited spec is the same network as #{cid}; approve it instead")
        who = actor or "user"
        rationale = f"edit of #{cid} by {who}" + (f": {note}" if note else "")
        with self.store.transaction():
            new = self.store.add_candidate(self.run_id, c.iteration, Proposal(spec=spec, origin="human-edit",
                                                                              rationale=rationale),
                                           extra={"edited_from": cid}, actor=who)
            self.store.transition(cid, ["proposed"], "rejected", who, f"edited into #{new.id}")
            self.store.add_feedback(self.run_id, "edit", f"replaced by #{new.id}" + (f": {note}" if note else ""),
                                    who, candidate_id=cid, iteration=c.iteration)
        return new

    def _update_iteration(self, number: int, actor: str = "") -> None:
        if number <= 0:
            return
        try:
            it = self.store.get_iteration(self.run_id, number)
        except UserError:
            return
        if it.status not in OPEN_ITERATION:
            return
        cands = self.store.list_candidates(self.run_id, iteration=number)
        if any(c.status in PENDING for c in cands):
            return
        if any(c.status in IN_FLIGHT for c in cands):
            if it.status != "evaluating":
                self.store.set_iteration_status(self.run_id, number, "evaluating", actor=actor)
            return
        if it.status == "proposing":
            return  # the designer is still at work (or crashed before storing; propose reuses it)
        failed = [c for c in cands if c.status == "failed"]
        done = [c for c in cands if c.status == "done"]
        if failed and not done:
            err = "; ".join(f"#{c.id}: {c.error}" for c in failed)[:1000]
            self.store.finish_iteration(self.run_id, number, status="failed", error=err, actor=actor)
        else:
            self.store.finish_iteration(self.run_id, number, status="done", actor=actor)

    def poll(self) -> SessionState:
        """Read job outcomes from the store, close finished iterations, and return the state."""
        for it in self.store.list_iterations(self.run_id):
            if it.status in OPEN_ITERATION:
                self._update_iteration(it.number)
        return self.state()

    def wait(
        self,
        timeout_s: float | None = None,
        poll_s: float = 1.0,
        drain: Callable[[], Any] | None = None,
    ) -> SessionState:
        """Block until nothing of this run is queued or running.

        Args:
            timeout_s: give up after this long (None = forever).
            poll_s: pause between looks at the store.
            drain: called on every pass (e.g. a function that runs the queue in this process);
                without it, a separate worker process must be running.

        Raises:
            SessionError: the timeout passed with evaluations still queued or running.
        """
        start = time.monotonic()
        while True:
            if drain is not None:
                drain()
            st = self.poll()
            if not st.in_flight:
                return st
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise SessionError(
                    f"{len(st.in_flight)} evaluation(s) still queued or running after {timeout_s:g} s; "
                    "is a worker running? (python -m nas_core worker --db DB)"
                )
            time.sleep(poll_s)

    def step_auto(self, actor: str = "auto") -> StepResult:
        """One unattended step: approve what waits; else, if nothing runs, propose and approve.

        Designer failures end in ``failed`` with the message (the iteration records it too).
        """
        st = self.poll()
        if st.pending:
            for cid in st.pending:
                self.approve(cid, actor)
            return StepResult("approved", st.pending)
        if st.in_flight:
            return StepResult("waiting", st.in_flight, st.reason)
        if not st.can_propose:
            return StepResult("finished", (), st.reason)
        try:
            cands = self.propose(actor)
        except UserError as exc:
            return StepResult("failed", (), str(exc))
        for c in cands:
            self.approve(c.id, actor)
        return StepResult("proposed", tuple(c.id for c in cands))

    # ------------------------------------------------------------------ baselines

    def ensure_baselines(self, actor: str = "") -> list[Candidate]:
        """Queue each of the run's baselines once (FL-NAS Table I); returns their candidates."""
        cfg = self.config
        have = {c.baseline: c for c in self.candidates() if c.origin == "baseline"}
        out = []
        for name in cfg.baselines:
            c = have.get(name)
            if c is None:
                c = self.store.add_candidate(
                    self.run_id, 0, Proposal(spec=baseline_spec(name), origin="baseline",
                                             rationale=f"hand-made baseline {name}"),
                    baseline=name, actor=actor or "baseline",
                )
            if c.status == "proposed":
                self.store.approve(c.id, actor or "baseline", *self.job_for(c))
                c = self.store.get_candidate(c.id)
            out.append(c)
        return out

    def baselines(self) -> list[Candidate]:
        """The run's baseline candidates."""
        return [c for c in self.candidates() if c.origin == "baseline"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True
