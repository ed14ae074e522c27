"""The search commands of the CLI: ``search``, ``propose``, ``approve``, ``reject``, ``edit``, ``prompt``, ``table``.

Owns the command-line face of :mod:`nas_core.session`, including ``table``: the
FL-NAS Table I comparison (:func:`comparison_table`, built by
:func:`nas_core.selection.comparison_of`): the run's best searched candidates next
to the hand-made baselines (ResNet-18/34, MobileNetV1/V2) trained the same way
on the same split, with an arrow where a searched model beats every baseline.

Where evaluations run (``--worker``):

- ``inprocess`` (default): this command drains the job queue itself (the same
  worker code as ``python -m nas_core worker``, run in this process), so
  ``search --auto-approve`` needs nothing else running.
- ``external``: queue the jobs and wait for a separately started worker
  (``python -m nas_core worker --db DB``, or the one ``serve`` starts), e.g. a
  Ray-backed worker; ``--timeout`` bounds the wait.

LLM endpoints: ``--base-url`` + ``--model`` pick any OpenAI-compatible server;
the key comes from ``EQUINAS_LLM_API_KEY`` or ``OPENAI_API_KEY`` (never from the
command line, where other users could read it). Examples:

- OpenAI: ``OPENAI_API_KEY=sk-... search --engine llm --model gpt-4o-mini``
- Ollama: ``search --engine llm --base-url http://localhost:11434/v1 --model llama3.1``
- vLLM: ``search --engine llm --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_core.cli import CliError, emit
from nas_core.designers.llm.client import LlmSettings
from nas_core.engines import engine_names, get_engine
from nas_core.errors import UserError
from nas_core.records import OBJECTIVES, Candidate
from nas_core.runconfig import RunConfig, parse_constraint
from nas_core.rungs import HalvingSettings, candidate_rungs, parse_ladder
from nas_core.selection import TABLE_COLUMNS as TABLE_COLUMNS
from nas_core.selection import ComparisonTable as ComparisonTable
from nas_core.selection import Priorities, comparison_of
from nas_core.selection import TableRow as TableRow
from nas_core.settings import PRECISION_HELP, PRECISIONS, Env, TrainSettings
from nas_core.space import Choices
from nas_core.store import Store
from nas_core.worker import run_pending

if TYPE_CHECKING:
    from nas_core.session import Session

log = logging.getLogger(__name__)

# FL-NAS Table I lives in nas_core.selection (the studio reads it too); importable from here as before.


def comparison_table(session: Session, top: int = 3) -> ComparisonTable:
    """The run's ``top`` best searched candidates (by its priorities) and its baselines."""
    return comparison_of(session.run_id, session.ranked(top), session.baselines(), session.config.baselines)


# ---------------------------------------------------------------------------------------------- helpers


def _open(args: argparse.Namespace) -> Store:
    return Store.open(args.db)


def _session(store: Store, run_id: int) -> Session:
    # Deferred: the session checks specs against built networks, so it imports torch; `--help` and
    # `table --no-evaluate` of an unknown run stay light.
    from nas_core.session import Session

    return Session(store, run_id)


def _cand_dict(c: Candidate) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": c.id, "run_id": c.run_id, "iteration": c.iteration, "origin": c.origin, "status": c.status,
        "key": c.key, "rationale": c.rationale, "spec": c.spec.to_dict(), "error": c.error,
    }
    if c.baseline:
        d["baseline"] = c.baseline
    if c.metrics is not None:
        d["metrics"] = {n: c.metrics.value(n) for n in OBJECTIVES}
    return d


def _cand_line(c: Candidate) -> str:
    m = ""
    if c.metrics is not None:
        mm = c.metrics
        m = (f" acc={mm.test_acc:.4f} unfairness={_fmt(mm.fairness.unfairness)} "
             f"params={mm.hardware.params:,}")
    return f"#{c.id} [{c.status}] {c.origin} it{c.iteration}{m}" + (f"\n    why: {c.rationale}" if c.rationale else "")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _drain(args: argparse.Namespace, store: Store | None = None):
    """The function that gets queued jobs done, per ``--worker``."""
    if getattr(args, "worker", "inprocess") == "external":
        if store is not None and not any(w.alive for w in store.worker_status()):
            _progress(args, f"no worker is running for {args.db}; start one with "
                            f"`python -m nas_core worker --db {args.db}` (waiting for it)")
        return None
    return lambda: run_pending(args.db, poll_s=0.05)


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    train_kw: dict[str, Any] = {"seed": args.seed}
    if args.epochs is not None:
        train_kw["max_epochs"] = args.epochs
    if args.image_size is not None:
        train_kw["image_size"] = args.image_size
    if args.subsample is not None:
        train_kw["subsample"] = args.subsample
    if args.batch_size is not None:
        train_kw["batch_size"] = args.batch_size
    if args.patience is not None:
        train_kw["patience"] = args.patience
    if args.precision is not None:
        train_kw["precision"] = args.precision
    env_kw: dict[str, Any] = {}
    if args.latency_budget is not None:
        env_kw["latency_budget_s"] = args.latency_budget
    if args.threads is not None:
        env_kw["threads"] = args.threads
    choices = Choices.default()
    if args.choices:
        try:
            choices = Choices.from_dict(json.loads(Path(args.choices).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise CliError(f"cannot read the Choices file {args.choices}: {exc}") from exc
    llm_kw: dict[str, Any] = {}
    for flag, name in (("base_url", "base_url"), ("model", "model"), ("temperature", "temperature"),
                       ("llm_timeout", "timeout_s"), ("llm_retries", "max_retries"), ("decoding", "decoding")):
        if getattr(args, flag) is not None:
            llm_kw[name] = getattr(args, flag)
    priorities = Priorities()
    if args.priorities:
        priorities = Priorities.from_names(args.priorities.split(","), mode=args.priority_mode)
    kw: dict[str, Any] = dict(
        name=args.name or f"{args.engine} search",
        dataset=args.dataset,
        engine=args.engine,
        evaluation=args.evaluation,
        choices=choices,
        train=TrainSettings(**train_kw),
        env=Env(**env_kw),
        priorities=priorities,
        llm=LlmSettings(**llm_kw),
        constraints=tuple(parse_constraint(c) for c in args.constraint or ()),
        iterations=args.iterations,
        per_iteration=args.per_iteration,
        auto_approve=args.auto_approve,
        seed=args.seed,
        budget=args.budget,
        device=args.device,
    )
    if args.objectives:
        kw["objectives"] = tuple(o.strip() for o in args.objectives.split(","))
    elif get_engine(args.engine).max_objectives == 2:
        kw["objectives"] = ("accuracy", "unfairness")  # NSGA-II takes exactly two
    if getattr(args, "rungs", None) is not None or getattr(args, "reduction_factor", None) is not None:
        halving = HalvingSettings()
        if args.rungs is not None:
            ladder = parse_ladder(args.rungs)
            halving = HalvingSettings(enabled=bool(ladder), rungs=ladder or halving.rungs)
        if args.reduction_factor is not None:
            halving = HalvingSettings(halving.enabled, halving.rungs, args.reduction_factor)
        kw["halving"] = halving
    if args.population is not None:
        kw["population"] = args.population
    return RunConfig(**kw)


# ---------------------------------------------------------------------------------------------- commands


def cmd_search(args: argparse.Namespace) -> int:
    """Create a run (or continue one) and run its iterations."""
    from nas_core.session import Session  # deferred (torch), as in _session

    with _open(args) as store:
        if args.run is not None:
            s = Session(store, args.run)
        else:
            s = Session.create_run(store, _config_from_args(args), actor="cli")
        drain = _drain(args, store) if args.auto_approve else None
        report: dict[str, Any] = {"run_id": s.run_id, "iterations": []}
        if args.baselines:
            s.ensure_baselines(actor="cli")
        if not args.auto_approve:
            st = s.poll()
            cands = s.propose(actor="cli") if st.can_propose else [s.store.get_candidate(i) for i in st.pending]
            if not cands:
                raise CliError(f"nothing to do: {st.reason}")
            report["proposed"] = [_cand_dict(c) for c in cands]
            ids = " ".join(str(c.id) for c in cands)
            text = "\n".join(_cand_line(c) for c in cands) + (
                f"\nrun {s.run_id}: approve with `python -m nas_core approve --db {args.db} {ids}`, "
                f"or reject with `python -m nas_core reject --db {args.db} ID --reason TEXT`"
            )
            emit(args, report, text)
            return 0
        failures = 0
        for i in range(args.iterations):
            if drain is not None and s.state().in_flight:
                s.wait(timeout_s=args.timeout, poll_s=0.2, drain=drain)
            r = s.step_auto(actor="cli")
            entry = {"step": i + 1, "action": r.action, "candidates": list(r.candidates), "message": r.message}
            if r.action == "finished":
                report["iterations"].append(entry)
                _progress(args, f"stopping: {r.message}")
                break
            if r.action == "failed":
                failures += 1
                _progress(args, f"iteration {i + 1}: failed: {r.message}")
            s.wait(timeout_s=args.timeout, poll_s=0.2 if drain else 1.0, drain=drain)
            for cid in r.candidates:
                c = s.store.get_candidate(cid)
                entry.setdefault("results", []).append(_cand_dict(c))
                _progress(args, f"iteration {i + 1}: " + _cand_line(c).splitlines()[0])
            report["iterations"].append(entry)
        if args.baselines:
            s.wait(timeout_s=args.timeout, poll_s=0.2, drain=drain)
        best = s.best()
        report["best"] = None if best is None else _cand_dict(best)
        # Count what failed, not only the proposal steps that failed: a candidate whose evaluation
        # failed is a failure the user must hear about.
        searched = [c for c in s.store.list_candidates(s.run_id) if c.origin != "baseline"]
        failed_cands = [c for c in searched if c.status == "failed"]
        report["failed_candidates"] = [c.id for c in failed_cands]
        report["failed_proposals"] = failures
        lines = [f"run {s.run_id}: {len(report['iterations'])} iteration(s), {len(failed_cands)} of {len(searched)} "
                 f"candidate(s) failed" + (f", {failures} proposal step(s) failed" if failures else "")]
        if failed_cands:
            lines.append("failed: " + "; ".join(f"#{c.id}: {(c.error or 'no message')[:160]}" for c in failed_cands[:5])
                         + ("; ..." if len(failed_cands) > 5 else ""))
        lines.append("best: " + ("none measured" if best is None else _cand_line(best)))
        # successive halving: who stopped at a preliminary rung
        stopped = [v.candidate_id for v in candidate_rungs(s.store, s.run_id).values() if v.state == "stopped"]
        if stopped:
            report["stopped_at_rung"] = stopped
            lines.append(f"{len(stopped)} candidate(s) stopped after a preliminary rung "
                         f"({', '.join(f'#{i}' for i in stopped)}): see `python -m nas_core rungs --db {args.db} "
                         f"--run {s.run_id}`; continue one with `python -m nas_core promote --db {args.db} ID`")
        if best is not None:
            lines.append("spec: " + best.spec.to_json())
            lines.append(f"compare with the baselines: python -m nas_core table --db {args.db} --run {s.run_id}")
        emit(args, report, "\n".join(lines))
        return 0 if best is not None else 1


def _progress(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "json", False):
        sys.stderr.write(text + "\n")
    log.info(text)


def cmd_propose(args: argparse.Namespace) -> int:
    """One proposal step of an existing run."""
    with _open(args) as store:
        s = _session(store, args.run)
        cands = s.propose(actor=args.actor)
        emit(args, [_cand_dict(c) for c in cands], "\n".join(_cand_line(c) for c in cands))
    return 0


def _run_of(store: Store, cid: int) -> int:
    return store.get_candidate(cid).run_id


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve proposals (queues their evaluation); with --wait, evaluate them now."""
    out, errors = [], []
    with _open(args) as store:
        sessions = {}
        for cid in args.candidates:
            # One refusal must not hide the approvals before and after it.
            try:
                run_id = _run_of(store, cid)
                s = sessions.setdefault(run_id, _session(store, run_id))
                job = s.approve(cid, actor=args.actor)
            except UserError as exc:
                errors.append(f"#{cid}: {exc}")
                continue
            out.append({"candidate_id": cid, "job_id": job.id, "kind": job.kind})
        if args.wait:
            drain = _drain(args, store)
            for s in sessions.values():
                s.wait(timeout_s=args.timeout, poll_s=0.2, drain=drain)
            for o in out:
                c = store.get_candidate(o["candidate_id"])
                o.update(status=c.status, error=c.error)
    if out or args.json:
        emit(args, out, "\n".join(f"#{o['candidate_id']} queued as job {o['job_id']} ({o['kind']})"
                                  + (f" -> {o['status']}" if "status" in o else "") for o in out))
    if errors:
        raise CliError("; ".join(errors))
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    """Reject a proposal with a reason (it goes into the next prompt)."""
    with _open(args) as store:
        s = _session(store, _run_of(store, args.candidate))
        c = s.reject(args.candidate, args.reason, actor=args.actor)
        emit(args, _cand_dict(c), f"#{c.id} rejected: {args.reason}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    """Replace a proposal by an edited spec (validated)."""
    try:
        spec = json.loads(Path(args.spec).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"cannot read the spec file {args.spec}: {exc}") from exc
    with _open(args) as store:
        s = _session(store, _run_of(store, args.candidate))
        c = s.edit(args.candidate, spec, actor=args.actor, note=args.note or "")
        emit(args, _cand_dict(c), f"#{args.candidate} replaced by #{c.id} (proposed)")
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    """Print the exact prompt the LLM designer would send next."""
    with _open(args) as store:
        p = _session(store, args.run).next_prompt()
        emit(args, {"system": p.system, "user": p.user}, p.text)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """FL-NAS Table I: best searched candidates vs the baselines (evaluated once per run)."""
    with _open(args) as store:
        s = _session(store, args.run)
        if args.evaluate:
            s.ensure_baselines(actor="cli")
            s.wait(timeout_s=args.timeout, poll_s=0.2 if args.worker == "inprocess" else 1.0,
                   drain=_drain(args, store))
        table = comparison_table(s, top=args.top)
        emit(args, table.to_dict(), table.to_text())
    return 0 if table.rows else 1


def register_cli(sub: Any) -> None:
    """Add the search commands to the CLI."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", required=True, help="the run store (SQLite file)")
        p.add_argument("--json", action="store_true", help="print JSON")

    def worker_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--worker", choices=("inprocess", "external"), default="inprocess",
                       help="run evaluations in this process (default) or wait for a running worker")
        p.add_argument("--timeout", type=float, default=None, help="seconds to wait for evaluations")

    p = sub.add_parser("search", help="run a search: propose, approve, evaluate, repeat")
    common(p)
    worker_opts(p)
    p.add_argument("--dataset", default="data/default",
                   help="data set folder or registered name (default: data/default)")
    p.add_argument("--run", type=int, help="continue this run instead of creating one")
    p.add_argument("--name", help="run name")
    p.add_argument("--engine", choices=engine_names(), default="heuristic",
                   help="search engine (the registry, nas_core.engines)")
    p.add_argument("--evaluation", choices=("scratch", "supernet"), default="scratch")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--per-iteration", type=int, default=1, help="proposals per iteration")
    p.add_argument("--auto-approve", action="store_true", help="approve every proposal (unattended)")
    p.add_argument("--budget", type=int, help="most candidates to evaluate")
    p.add_argument("--population", type=int, help="LINAS/NSGA-II initial population")
    p.add_argument("--objectives", help="comma-separated objectives for LINAS/NSGA-II, e.g. accuracy,unfairness")
    p.add_argument("--constraint", action="append", help="e.g. params<=500000 (repeatable)")
    p.add_argument("--priorities", help="comma-separated objectives in priority order (GetBestMetrics)")
    p.add_argument("--priority-mode", choices=("ordered", "weighted"), default="ordered")
    p.add_argument("--choices", help="JSON file with the search space (Choices)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1")
    p.add_argument("--model", help="LLM model name")
    p.add_argument("--temperature", type=float)
    p.add_argument("--llm-timeout", type=float, help="seconds per LLM request")
    p.add_argument("--llm-retries", type=int, help="follow-ups after an invalid answer")
    p.add_argument("--decoding", choices=("auto", "json_schema", "ollama", "json_object", "text"),
                   help="constrained decoding of LLM answers (default auto: detect, then fall back)")
    p.add_argument("--epochs", type=int, help="max training epochs per candidate")
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--patience", type=int)
    p.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--subsample", type=int, help="train on a balanced subsample of this many images")
    p.add_argument("--rungs", help="successive-halving ladder below full training, EPOCHS@PIXELS[/IMAGES] comma-"
                                   "separated (default 5@32; 'none': every candidate trains at full fidelity)")
    p.add_argument("--reduction-factor", type=int, help="about 1/N of the candidates at a rung go on (default 3)")
    p.add_argument("--latency-budget", type=float, help="seconds per image on the target")
    p.add_argument("--threads", type=int, help="CPU threads for latency measurements")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baselines", action="store_true", help="also evaluate the baselines for `table`")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("propose", help="ask a run's engine for the next proposals")
    common(p)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=cmd_propose)

    p = sub.add_parser("approve", help="approve proposals (queues their evaluation)")
    common(p)
    worker_opts(p)
    p.add_argument("candidates", type=int, nargs="+")
    p.add_argument("--actor", default="cli")
    p.add_argument("--wait", action="store_true", help="wait for (and by default run) the evaluations")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("reject", help="reject a proposal with a reason")
    common(p)
    p.add_argument("candidate", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=cmd_reject)

    p = sub.add_parser("edit", help="replace a proposal by an edited spec (JSON file)")
    common(p)
    p.add_argument("candidate", type=int)
    p.add_argument("--spec", required=True)
    p.add_argument("--note")
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("prompt", help="print the next rendered LLM prompt of a run")
    common(p)
    p.add_argument("--run", type=int, required=True)
    p.set_defaults(func=cmd_prompt)

    p = sub.add_parser("table", help="Table I: best searched models vs ResNet/MobileNet baselines")
    common(p)
    worker_opts(p)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false",
                   help="only print what is measured; do not evaluate missing baselines")
    p.set_defaults(func=cmd_table)
