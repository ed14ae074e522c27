"""Fine-tuning a super-network estimate from the app, and how well the estimates ranked the fine-tuned ones.

Owns :func:`queue_finetune` (the Results page's "Fine-tune this estimate": a ``supernet_finetune`` job
for the estimate's candidate, carrying the run's DatasetRef) and :func:`finetune_ranking` (Kendall tau of
the estimates against what fine-tuning measured, per super-network). :mod:`nas_core.studio` re-exports
both; pages call them there.

Decisions:
- The fine-tuned result replaces the candidate's metrics (``estimate=False``, test split), so it is an
  ordinary measured candidate everywhere (tables, plots, exports); the estimate it replaced travels in
  the job's payload (``estimate``), which is where :func:`finetune_ranking` reads it back.
- The job's weights go where a measured candidate's weights go, so export works as for any candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_core.errors import UserError
from nas_core.run_setup import weights_path

#: The job kind this module queues.
FINETUNE_KIND = "supernet_finetune"


def can_finetune(candidate: Any) -> bool:
    """True for a finished candidate whose result is a super-network estimate."""
    return candidate.status == "done" and candidate.metrics is not None and bool(candidate.metrics.estimate)


def queue_finetune(store: Any, candidate_id: int, actor: str = "app") -> int:
    """Queue the fine-tuning of a super-network estimate into a measured candidate; returns the job id.

    The job (kind ``supernet_finetune``) extracts the sub-network with its inherited weights from the
    super-network the estimate came from, trains it with the run's settings and measures it on the test
    split like any candidate; the candidate's result is then no longer an estimate.

    Raises:
        UserError: the candidate is not a finished estimate, or its run's super-network cannot be used
            (not trained, another data set, the spec is not a sub-network); the message says what to do.
    """
    from nas_core.session import Session
    from nas_core.supernet.jobs import make_payload

    cand = store.get_candidate(int(candidate_id))
    if cand.metrics is None or not cand.metrics.estimate:
        raise UserError(f"candidate #{cand.id} is not a super-network estimate; only an estimate can be "
                        "fine-tuned (a measured candidate can be re-measured instead)")
    if cand.status != "done":
        raise UserError(f"candidate #{cand.id} is {cand.status}; wait until it is done, then fine-tune it")
    config = Session(store, cand.run_id).config
    payload = dict(make_payload(config, cand.spec, store=store, split="test"))
    payload["weights_out"] = str(weights_path(store, cand.run_id, cand.id))
    payload["device"] = "cuda" if config.device == "cuda" else "cpu"
    payload["estimate"] = {"accuracy": float(cand.metrics.test_acc),
                           "unfairness": cand.metrics.fairness.unfairness}
    job = store.enqueue_job(FINETUNE_KIND, payload, run_id=cand.run_id, candidate_id=cand.id, actor=actor)
    return int(job.id)


def finetune_pairs(store: Any) -> list[dict[str, Any]]:
    """Every finished fine-tune: its super-network, the estimate it replaced and the measured result."""
    out = []
    for job in store.list_jobs(status="done"):
        if job.kind != FINETUNE_KIND or job.candidate_id is None:
            continue
        est = (job.payload or {}).get("estimate") or {}
        cand = store.get_candidate(job.candidate_id)
        if cand.metrics is None or cand.metrics.estimate or est.get("accuracy") is None:
            continue
        out.append({"checkpoint": str((job.payload or {}).get("checkpoint") or ""), "candidate": cand.id,
                    "estimate": float(est["accuracy"]), "measured": float(cand.metrics.test_acc)})
    return out


def finetune_ranking(store: Any, checkpoint: str | Path | None = None) -> tuple[float | None, int]:
    """Kendall tau of the estimates against the fine-tuned accuracies, and how many were compared.

    Args:
        store: the open store.
        checkpoint: only fine-tunes from this super-network (None: all).

    Returns:
        ``(tau, n)``; tau is None below 3 fine-tuned candidates or when either side has no spread.
    """
    import math

    want = None if checkpoint is None else str(Path(checkpoint).resolve())
    pairs = [p for p in finetune_pairs(store)
             if want is None or (p["checkpoint"] and str(Path(p["checkpoint"]).resolve()) == want)]
    n = len(pairs)
    est = [p["estimate"] for p in pairs]
    got = [p["measured"] for p in pairs]
    if n < 3 or len(set(est)) < 2 or len(set(got)) < 2:
        return None, n
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            s = (est[i] - est[j]) * (got[i] - got[j])
            concordant += s > 0
            discordant += s < 0
    ties_e = sum(1 for i in range(n) for j in range(i + 1, n) if est[i] == est[j])
    ties_g = sum(1 for i in range(n) for j in range(i + 1, n) if got[i] == got[j])
    pairs_n = n * (n - 1) / 2
    denom = math.sqrt((pairs_n - ties_e) * (pairs_n - ties_g))
    return (concordant - discordant) / denom, n
