"""CLI of successive halving and re-measurement: ``rungs``, ``promote``, ``stop``, ``remeasure``, ``seeds``.

Owns the sub-commands that show where each candidate stands on the run's rung ladder,
force a candidate on to its next rung or stop it, and train a measured candidate again
with another initialisation seed (see :mod:`nas_core.rungs`).
"""

from __future__ import annotations

import argparse
from typing import Any

from nas_core.cli import emit
from nas_core.rungs import candidate_rungs, promote, queue_remeasure, rung_meta, seed_spread, stop
from nas_core.store import Store
from nas_core.worker import run_pending


def _open(args: argparse.Namespace) -> Any:
    return Store.open(args.db)


def cmd_rungs(args: argparse.Namespace) -> int:
    """Each candidate's rung, its preliminary or final result and its rank at that rung."""
    with _open(args) as store:
        views = candidate_rungs(store, args.run)
    lines = [v.to_text() for v in views.values()] or [
        f"run {args.run} has no candidate on a rung ladder (approve one; runs whose training is already "
        "no more than the first rung, 5 epochs at 32 px by default, train at full fidelity at once)"]
    emit(args, [v.to_dict() for v in views.values()], "\n".join(lines))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Send a stopped candidate on to its next rung."""
    with _open(args) as store:
        job = promote(store, args.candidate, actor=args.actor)
        fidelity = rung_meta(job)["fidelity"]
        emit(args, {"candidate_id": args.candidate, "job_id": job.id, "fidelity": fidelity},
             f"#{args.candidate} queued at {fidelity} (job {job.id})")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a candidate's queued or running rung; its preliminary result stays."""
    with _open(args) as store:
        job = stop(store, args.candidate, actor=args.actor)
        text = (f"#{args.candidate}: job {job.id} cancelled; the candidate keeps its preliminary result"
                if job.status == "cancelled" else
                f"#{args.candidate}: job {job.id} is running; it stops at its next batch")
        emit(args, {"candidate_id": args.candidate, "job_id": job.id, "status": job.status}, text)
    return 0


def cmd_remeasure(args: argparse.Namespace) -> int:
    """Train a measured candidate again with another initialisation seed on the same split."""
    with _open(args) as store:
        job = queue_remeasure(store, args.candidate, seed=args.seed, actor=args.actor)
        seed = job.payload["remeasure"]["init_seed"]
        out: dict[str, Any] = {"candidate_id": args.candidate, "job_id": job.id, "init_seed": seed}
        text = f"#{args.candidate}: re-measure with seed {seed} queued as job {job.id}"
        if args.wait:
            run_pending(args.db, poll_s=0.05)
            job = store.get_job(job.id)
            spread = seed_spread(store, args.candidate)
            out.update(status=job.status, error=job.error, spread=spread.to_dict())
            text += f" -> {job.status}" + (f": {job.error}" if job.error else "") + "\n" + spread.to_text()
        emit(args, out, text)
    return 0 if not args.wait or out.get("status") == "done" else 1


def cmd_seeds(args: argparse.Namespace) -> int:
    """A measured candidate's spread over initialisation seeds."""
    with _open(args) as store:
        spread = seed_spread(store, args.candidate)
    emit(args, spread.to_dict(), spread.to_text())
    return 0


def register_cli(sub: Any) -> None:
    """Add ``rungs``, ``promote``, ``stop``, ``remeasure`` and ``seeds``."""

    def common(p: argparse.ArgumentParser, candidate: bool = True) -> None:
        p.add_argument("--db", required=True, help="the run store (SQLite file)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if candidate:
            p.add_argument("candidate", type=int, help="candidate id")
            p.add_argument("--actor", default="cli", help="who does this (kept in the timeline)")

    p = sub.add_parser("rungs", help="where each candidate stands on the successive-halving ladder")
    common(p, candidate=False)
    p.add_argument("--run", type=int, required=True)
    p.set_defaults(func=cmd_rungs)
    p = sub.add_parser("promote", help="send a stopped candidate on to its next rung")
    common(p)
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("stop", help="stop a candidate's queued or running rung")
    common(p)
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("remeasure", help="train a measured candidate again with another initialisation seed")
    common(p)
    p.add_argument("--seed", type=int, default=None, help="the new seed (default: one more than any used)")
    p.add_argument("--wait", action="store_true", help="run it now in this process and print the spread")
    p.set_defaults(func=cmd_remeasure)
    p = sub.add_parser("seeds", help="a measured candidate's spread over initialisation seeds")
    common(p)
    p.set_defaults(func=cmd_seeds)
