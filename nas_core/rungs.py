"""Successive halving: every approved candidate first trains at low fidelity; promising ones go on.

Owns the rung ladder (:class:`Rung`, :class:`HalvingSettings`, a run setting kept in
``RunConfig.halving``), the worker's ``evaluate_rung`` and ``remeasure`` job handlers
(:func:`run_rung`, :func:`run_remeasure`), the hook the worker calls when such a job ends
(:func:`after_result`, :func:`after_cancel`), the promote/stop decision (:func:`decide`),
the user's overrides (:func:`promote`, :func:`stop`, :func:`queue_remeasure`) and the read
models the app shows (:func:`candidate_rungs`, :func:`seed_spread`). It never imports
streamlit; torch and optuna are imported only inside the functions that need them.

How a candidate moves (``RunConfig.halving`` active, evaluation ``scratch``):

1. Approval queues rung 1 of the ladder (default: 5 epochs at 32 px) as an
   ``evaluate_rung`` job. Its metrics are *preliminary*: they go to a ``rungs`` row
   (:mod:`nas_core.store.rungs`) with their fidelity label, never to the candidate's
   metrics, so rankings and GetBestMetrics only ever compare full-fidelity results.
2. When the rung's job ends, the worker, in the same transaction as the result, records
   the rung and asks Optuna's :class:`~optuna.pruners.SuccessiveHalvingPruner` whether the
   candidate continues; if so it queues the next rung, the last one being the run's own
   training settings (full fidelity, written as the candidate's metrics). Otherwise the
   candidate ends ``done`` with its preliminary result only.
3. A person may force either way: :func:`promote` a stopped candidate to its next rung,
   :func:`stop` one that is queued or running at a later rung.

A promotion joins the end of the queue (jobs run oldest first), so when an iteration approves
several candidates, every one of them gets its preliminary result before any trains at full
fidelity.

The decision (why Optuna, and how). There is no scheduler here: one in-memory Optuna study
per run is rebuilt from the store's rung rows on every decision, replaying them in the
order they finished (``study.ask()`` once per candidate, ``trial.report(score, step)`` with
rung r at step ``reduction_factor ** r``, then ``trial.should_prune()``). That is exactly
asynchronous successive halving (ASHA): a candidate continues when its score (by default
its validation accuracy, ``HalvingSettings.metric``) at the rung is among the best ``1 / reduction_factor`` of all the run's candidates that
finished that rung so far (at least the best one), ties promoted. Consequences, stated
because they are what a user sees: the first candidate of a run always continues; with the
default factor 3, of n candidates at a rung about n/3 continue. Replays are deterministic,
so the decision recorded for a rung is the one a replay gives again. The score comes from the
validation split, never the test split, so the test split stays out of selection. After one
short epoch many candidates still predict the majority class, so their accuracies tie; tied
candidates all continue (Optuna promotes ties), which costs time but never drops the best.
Validation loss separates them but ranked worse in the benchmark (see ``HalvingSettings``).

Rungs that would cost as much as full training (same or more epochs and pixels, no
subsample) are left out of the ladder; a run without a cheaper rung trains every candidate
at full fidelity directly, as before.

Re-measure: :func:`queue_remeasure` trains a measured candidate again with a new
initialisation seed on the same split (the data are prepared with the run's seed, so the
split does not move) and keeps the result in ``remeasures``; :func:`seed_spread` gives
the spread beside the bootstrap interval.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nas_core.errors import UserError
from nas_core.jobresult import JobResult, Progress
from nas_core.settings import SettingsError, TrainSettings
from nas_core.store import rungs as rows

if TYPE_CHECKING:
    from nas_core.store import Store

log = logging.getLogger(__name__)

#: Job kinds this module handles (their handlers are registered in nas_core.jobs).
RUNG_KIND = "evaluate_rung"
REMEASURE_KIND = "remeasure"
FOLLOW_UP_KINDS = frozenset({RUNG_KIND, REMEASURE_KIND})
#: What the pruner may compare at a rung (validation numbers only: the test split stays out of selection).
SCORE_METRICS = ("val_loss", "val_acc")
#: Keys under which a rung's / re-measurement's own facts ride in the job payload beside the EvalRequest.
HALVING_KEY = "halving"
REMEASURE_KEY = "remeasure"


class RungError(UserError):
    """A promote / stop / re-measure request that cannot be done now (the message says why)."""


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Rung:
    """One low-fidelity step of the ladder (the full-fidelity step is the run's own training)."""

    epochs: int = 1  # training epochs at this rung (no early stopping below full fidelity)
    image_size: int | None = 32  # training resolution; None = the run's; capped at the run's
    # Balanced subsample of this many images; None = the run's. A subsample is split on its own (same
    # seed), so its validation images are a subset chosen for the rung: every candidate gets the same.
    subsample: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise SettingsError(f"a rung needs at least 1 epoch, got {self.epochs!r}")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 8):
            raise SettingsError(f"a rung's image_size must be a whole number of at least 8 px, got {self.image_size!r}")
        if self.subsample is not None and (not isinstance(self.subsample, int) or self.subsample < 20):
            raise SettingsError(f"a rung's subsample must be at least 20 images, got {self.subsample!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return dataclasses.asdict(self)


#: The default first rung (for the default 10 epochs at 64 px: half the epochs at half the resolution).
DEFAULT_RUNG = Rung(epochs=5, image_size=32)
#: The full training the default rung was sized for (fidelity_estimates scales it to other settings).
DEFAULT_FULL = TrainSettings()


@dataclass(frozen=True)
class HalvingSettings:
    """Successive halving of a run: the ladder below full fidelity and how many go on."""

    enabled: bool = True  # False: every approved candidate trains at full fidelity at once
    # Cheap first: half the epochs at half the resolution, ~1/8 of a default full training (5 epochs at
    # 32 px for 10 at 64). Measured (benchmarks/bench_fidelity.py --quick, 24 specs, the same shares of its
    # 5 epochs at 32 px): Kendall tau 0.66 = 0.82 of the 0.80 noise ceiling (Unfairness 0.98 of its
    # ceiling); the former 1 epoch at 32 px ranked at 0.55-0.64 of it.
    rungs: tuple[Rung, ...] = field(default_factory=lambda: (DEFAULT_RUNG,))
    reduction_factor: int = 3  # keep about the best 1/3 at each rung (Optuna's eta; >= 2)
    # What the pruner compares: val_acc | val_loss (lower is better). Validation accuracy by measurement
    # (benchmarks/bench_iteration.py, quick form, 24 specs, the former 1-epoch rung): Kendall tau 0.49
    # against full training vs 0.22 for the loss, and it kept the best spec in 10 of 10 arrival orders vs
    # 1 of 10. Ties all continue, the safe side.
    metric: str = "val_acc"

    def __post_init__(self) -> None:
        rungs = tuple(r if isinstance(r, Rung) else _rung_from(r) for r in self.rungs)
        object.__setattr__(self, "rungs", rungs)
        if self.metric not in SCORE_METRICS:
            raise SettingsError(f"halving metric {self.metric!r} is unknown; use {' or '.join(SCORE_METRICS)}")
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 2:
            raise SettingsError(f"reduction_factor must be a whole number of at least 2, got {self.reduction_factor!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (what the store keeps inside the run's settings)."""
        return {"enabled": self.enabled, "rungs": [r.to_dict() for r in self.rungs],
                "reduction_factor": self.reduction_factor, "metric": self.metric}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HalvingSettings:
        """Inverse of :meth:`to_dict`.

        Raises:
            SettingsError: unknown fields or invalid values, named.
        """
        allowed = {"enabled", "rungs", "reduction_factor", "metric"}
        unknown = set(data) - allowed
        if unknown:
            raise SettingsError(f"halving settings: unknown field(s) {sorted(unknown)}; allowed: "
                                f"{', '.join(sorted(allowed))}")
        d = dict(data)
        if "rungs" in d:
            d["rungs"] = tuple(_rung_from(r) for r in d["rungs"])
        return cls(**d)


def _rung_from(data: Any) -> Rung:
    if isinstance(data, Rung):
        return data
    if not isinstance(data, Mapping):
        raise SettingsError(f"a rung must be an object like {{'epochs': 1, 'image_size': 32}}, got {data!r}")
    unknown = set(data) - {"epochs", "image_size", "subsample"}
    if unknown:
        raise SettingsError(f"rung: unknown field(s) {sorted(unknown)}; allowed: epochs, image_size, subsample")
    return Rung(**dict(data))


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """``"1@32,3@48"`` (epochs@pixels, optionally ``/images``: ``"1@32/500"``) -> rungs.

    ``"none"`` or ``""`` gives no rung (full fidelity at once).

    Raises:
        SettingsError: a part that is not EPOCHS@PIXELS[/IMAGES].
    """
    text = (text or "").strip().lower()
    if text in ("", "none", "off"):
        return ()
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            head, _, sub = part.partition("/")
            epochs, _, size = head.partition("@")
            out.append(Rung(epochs=int(epochs), image_size=int(size) if size else None,
                            subsample=int(sub) if sub else None))
        except ValueError as exc:
            raise SettingsError(f"rung {part!r} must look like EPOCHS@PIXELS or EPOCHS@PIXELS/IMAGES, "
                                f"e.g. 1@32 or 1@32/500") from exc
    return tuple(out)


@dataclass(frozen=True)
class Step:
    """One step of a run's effective ladder."""

    index: int  # 0-based
    count: int  # steps in the ladder, full fidelity included
    train: TrainSettings
    final: bool

    @property
    def label(self) -> str:
        """Human label of the fidelity, e.g. ``rung 1/2: 1 epoch at 32 px``."""
        t = self.train
        what = (f"up to {t.max_epochs} epochs" if self.final and t.max_epochs > 1
                else f"{t.max_epochs} epoch{'s' if t.max_epochs > 1 else ''}")
        text = f"{what} at {t.image_size} px" + (f" on {t.subsample} images" if t.subsample else "")
        head = "full fidelity" if self.final else "preliminary"
        return f"rung {self.index + 1}/{self.count} ({head}): {text}"


def ladder(halving: HalvingSettings, full: TrainSettings) -> tuple[Step, ...]:
    """The run's effective ladder: the cheaper rungs, then full fidelity (always last)."""
    steps: list[TrainSettings] = []
    if halving.enabled:
        for r in halving.rungs:
            size = full.image_size if r.image_size is None else min(r.image_size, full.image_size)
            sub = r.subsample if r.subsample is not None else full.subsample
            if full.subsample is not None and sub is not None:
                sub = min(sub, full.subsample)
            t = dataclasses.replace(full, max_epochs=min(r.epochs, full.max_epochs), image_size=size, subsample=sub,
                                    patience=max(1, min(r.epochs, full.max_epochs)),  # no early stop
                                    n_bootstrap=min(full.n_bootstrap, 50))
            cheaper = (t.max_epochs < full.max_epochs or t.image_size < full.image_size
                       or (t.subsample is not None and t.subsample != full.subsample))
            if cheaper and (not steps or _costs_more(t, steps[-1])):
                steps.append(t)
    n = len(steps) + 1
    out = [Step(i, n, t, False) for i, t in enumerate(steps)]
    out.append(Step(n - 1, n, full, True))
    return tuple(out)


def _costs_more(t: TrainSettings, prev: TrainSettings) -> bool:
    def cost(s: TrainSettings) -> float:
        return s.max_epochs * s.image_size ** 2 * (s.subsample or 1e12)

    return cost(t) > cost(prev)


def active(config: Any) -> bool:
    """True when ``config`` (a RunConfig) trains candidates through at least one cheaper rung."""
    halving = getattr(config, "halving", None)
    return (halving is not None and config.evaluation == "scratch"
            and len(ladder(halving, config.train)) > 1)


# ---------------------------------------------------------------------------------------------
# Jobs


def rung_job(config: Any, full_payload: Mapping[str, Any], index: int) -> tuple[str, dict[str, Any]]:
    """(kind, payload) of step ``index`` of the run's ladder.

    ``full_payload`` is the full-fidelity ``EvalRequest.to_dict()`` (what the candidate would get
    without halving); a lower rung is the same request with the rung's training settings and
    no weights file.
    """
    steps = ladder(config.halving, config.train)
    if not 0 <= index < len(steps):
        raise RungError(f"the run's ladder has {len(steps)} rungs; there is no rung {index + 1}")
    step = steps[index]
    request = dict(full_payload)
    if not step.final:
        request["train"] = step.train.to_dict()
        request["weights_out"] = None
    # The EvalRequest stays the payload's top level (what every reader of an evaluation job expects);
    # the rung's facts ride along under one key the handler takes off.
    request[HALVING_KEY] = {"rung": index, "rungs": len(steps), "final": step.final, "fidelity": step.label,
                            "full": dict(full_payload), "reduction_factor": config.halving.reduction_factor,
                            "metric": config.halving.metric}
    return RUNG_KIND, request


def split_payload(payload: Mapping[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the EvalRequest dict, the facts under ``key``) of a rung or re-measure job's payload."""
    request = dict(payload)
    meta = request.pop(key, None) or {}
    return request, dict(meta)


def rung_meta(job: Any) -> dict[str, Any]:
    """A rung job's facts: rung (0-based), rungs, final, fidelity, full, reduction_factor."""
    return split_payload(job.payload, HALVING_KEY)[1]


def _train_and_measure(
    request: Any,
    prepared: Any,
    progress: Callable[[Progress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Any:
    """Train ``request`` on ``prepared`` and measure it without latency/memory (seconds, not tens)."""
    from nas_core import evaluator as ev
    from nas_core.metrics.hardware import resolve_device

    device = resolve_device(request.device)
    shape = tuple(int(s) for s in prepared.images.shape[1:])
    model = ev.build_for_request(request, shape, len(prepared.class_names))

    def forward(rec: Any) -> None:
        if progress is not None:
            progress(ev.epoch_progress(rec))

    training = ev.train_model(model, prepared, request.train, device, forward, should_stop)
    return ev.evaluate_model(model, prepared, request.env, training=training, device=device,
                             n_bootstrap=request.train.n_bootstrap, seed=request.train.seed, measure_costs=False)


def run_rung(
    payload: Mapping[str, Any],
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobResult:
    """The worker's ``evaluate_rung`` handler.

    The full-fidelity rung returns a metrics :class:`~nas_core.jobresult.JobResult` (written as the
    candidate's metrics, with weights); a lower rung a data result ``{"rung_metrics": ..., "cpu_s":
    ..., "seconds": ...}``, which the store keeps as the job's result and :func:`after_result` as a rung row.
    """
    from nas_core import evaluator as ev

    request_dict, meta = split_payload(payload, HALVING_KEY)

    def labelled(report: Progress) -> None:  # a progress bar can say which rung it is
        if progress is not None:
            p = Progress.from_report(report)
            fidelity = str(meta.get("fidelity", ""))
            progress(Progress(p.fraction, f"{fidelity}: {p.message}" if fidelity else p.message,
                              {**p.detail, "fidelity": fidelity, "preliminary": not meta.get("final")}))

    if meta.get("final"):
        return ev.run_request(request_dict, labelled, should_stop)
    labelled(ev.STARTING)
    request = ev.EvalRequest.from_dict(request_dict)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    metrics = _train_and_measure(request, ev.load_prepared(request), labelled, should_stop)
    return JobResult.data({"rung_metrics": metrics.to_dict(), "cpu_s": time.process_time() - cpu0,
                           "seconds": time.perf_counter() - wall0})


def _has_field(cls: type, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(cls))


def run_remeasure(
    payload: Mapping[str, Any],
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobResult:
    """The worker's ``remeasure`` handler: the same request, another initialisation seed, the same split."""
    from nas_core import evaluator as ev

    request_dict, meta = split_payload(payload, REMEASURE_KEY)
    request = ev.EvalRequest.from_dict(request_dict)
    seed = int(meta["init_seed"])
    prepared = ev.load_prepared(request)  # prepared with the run's seed: the run's split
    if _has_field(TrainSettings, "init_seed"):
        train = dataclasses.replace(request.train, init_seed=seed)
    else:  # the seed also picks the split, but the data are prepared already: only the init moves
        train = dataclasses.replace(request.train, seed=seed)
    request = dataclasses.replace(request, train=train, weights_out=None)
    cpu0 = time.process_time()
    metrics = _train_and_measure(request, prepared, progress, should_stop)
    return JobResult.data({"remeasure_metrics": metrics.to_dict(), "init_seed": seed,
                           "cpu_s": time.process_time() - cpu0})


# ---------------------------------------------------------------------------------------------
# The worker's hook


def _summary(metrics: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    def num(v: Any) -> float | None:
        return None if v is None else float(v)

    fairness = metrics.get("fairness") or {}
    return num(metrics.get("val_acc")), num(metrics.get("test_acc")), num(fairness.get("unfairness"))


def rung_score(metrics: Mapping[str, Any], metric: str) -> float | None:
    """The pruner's score of a rung's metrics, higher is better: minus validation loss, or validation accuracy."""
    value = metrics.get(metric)
    if value is None:
        return None
    return -float(value) if metric == "val_loss" else float(value)


def after_result(store: Store, job_id: int) -> None:
    """Follow up a finished ``evaluate_rung`` / ``remeasure`` job (call inside the result's transaction).

    A rung: record it, then let the pruner promote (queue the next rung) or stop the candidate.
    A re-measurement: record it.
    """

    job = store.get_job(job_id)
    if job.kind not in FOLLOW_UP_KINDS or job.status != "done":
        return
    request, payload = split_payload(job.payload, HALVING_KEY if job.kind == RUNG_KIND else REMEASURE_KEY)
    outcome = job.outcome
    result = (outcome.as_dict() if outcome is not None else None) or {}
    seconds = None if job.started_at is None or job.ended_at is None else job.ended_at - job.started_at
    if job.kind == REMEASURE_KIND:
        m = result["remeasure_metrics"]
        val, test, unf = _summary(m)
        rows.add_remeasure(store, run_id=int(job.run_id), candidate_id=int(payload["candidate_id"]), job_id=job.id,
                           seed=int(result["init_seed"]), val_acc=val, test_acc=test, unfairness=unf, metrics=m)
        return
    final = bool(payload["final"])
    if final and outcome is not None and outcome.kind == "metrics" and outcome.record is None:
        m = store.get_candidate(int(job.candidate_id)).metrics.to_dict()  # written once, as the candidate's
    else:
        m = result if final else result["rung_metrics"]
    val, test, unf = _summary(m)
    row = rows.add_rung(
        store, run_id=int(job.run_id), candidate_id=int(job.candidate_id), rung=int(payload["rung"]), final=final,
        fidelity=str(payload["fidelity"]), settings=request["train"], job_id=job.id,
        score=rung_score(m, str(payload.get("metric", "val_acc"))),
        val_acc=val, test_acc=test, unfairness=unf, metrics=m, seconds=result.get("seconds", seconds),
        cpu_s=result.get("cpu_s"), decision="final" if final else "", decided_by="",
    )
    if final:
        return
    if job.cancel_requested:  # a person pressed Stop while the rung ran: their word wins
        rows.set_decision(store, row.id, "stopped", "user")
        return
    promoted = decide(store, row, int(payload.get("reduction_factor", 3)))
    rows.set_decision(store, row.id, "promoted" if promoted else "stopped", "pruner")
    log.info("candidate %s after %s: %s", job.candidate_id, payload["fidelity"],
             "promoted" if promoted else "stopped")
    if promoted:
        try:
            _queue_next(store, payload, int(job.candidate_id), int(job.run_id), "pruner")
        except UserError as exc:  # e.g. someone cancelled it meanwhile; the rung row says promoted
            log.warning("candidate %s: could not queue its next rung: %s", job.candidate_id, exc)


def after_cancel(store: Store, job_id: int) -> None:
    """A stopped rung job: a candidate with a preliminary result ends ``done`` (not ``cancelled``)."""

    job = store.get_job(job_id)
    if job.kind != RUNG_KIND or job.candidate_id is None:
        return
    finished = rows.list_rungs(store, candidate_id=job.candidate_id)
    c = store.get_candidate(job.candidate_id)
    if finished and c.status == "cancelled":
        store.transition(c.id, ["cancelled"], "done", "user",
                         f"stopped at {rung_meta(job).get('fidelity', 'a rung')}; the preliminary result stays")


def _queue_next(store: Store, meta: Mapping[str, Any], candidate_id: int, run_id: int, actor: str) -> Any:
    from nas_core.runconfig import RunConfig

    config = RunConfig.from_dict(store.get_run(run_id).config)
    kind, nxt = rung_job(config, meta["full"], int(meta["rung"]) + 1)
    return store.enqueue_job(kind, nxt, run_id=run_id, candidate_id=candidate_id, actor=actor)


# ---------------------------------------------------------------------------------------------
# The decision


def asha_decisions(events: Sequence[tuple[Any, int, float | None]], reduction_factor: int = 3) -> list[bool]:
    """Optuna's SuccessiveHalvingPruner over rung results in the order they finished.

    Args:
        events: (candidate, rung index, score) per finished low rung, in order; higher scores are better.
        reduction_factor: about the best 1/reduction_factor at a rung continue.

    Returns:
        For each event, whether that candidate continues past that rung. The study lives in memory
        (``InMemoryStorage``); one trial per candidate reports rung r at step ``reduction_factor ** r``.
    """
    import optuna
    from optuna.pruners import SuccessiveHalvingPruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = SuccessiveHalvingPruner(min_resource=1, reduction_factor=reduction_factor, min_early_stopping_rate=0,
                                     bootstrap_count=0)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    trials: dict[Any, Any] = {}
    out = []
    for candidate, rung, score in events:
        trial = trials.get(candidate)
        if trial is None:
            trial = trials[candidate] = study.ask()
        value = float("nan") if score is None or math.isnan(score) else float(score)
        trial.report(value, step=reduction_factor ** int(rung))
        out.append(not trial.should_prune())
    return out


def decide(store: Store, row: Any, reduction_factor: int = 3) -> bool:
    """Whether the candidate of rung row ``row`` continues, by Optuna's SuccessiveHalvingPruner.

    The run's study is rebuilt in memory from its rung rows up to ``row`` (see the module
    docstring), so the answer depends only on what the store holds, in the order it finished.
    """

    history = [r for r in rows.list_rungs(store, run_id=row.run_id) if r.id <= row.id and not r.final]
    if not history or history[-1].id != row.id:
        raise RungError(f"rung row {row.id} is not among run {row.run_id}'s rungs")
    return asha_decisions([(r.candidate_id, r.rung, r.score) for r in history], reduction_factor)[-1]


# ---------------------------------------------------------------------------------------------
# A person's overrides


def promote(store: Store, candidate_id: int, actor: str = "user") -> Any:
    """Send a stopped candidate on to its next rung (the job record is returned).

    Raises:
        RungError: it has no finished rung, is already on its way, or is measured at full fidelity.
    """

    c = store.get_candidate(candidate_id)
    finished = rows.list_rungs(store, candidate_id=candidate_id)
    if not finished:
        raise RungError(f"#{candidate_id} has no finished rung yet ({c.status}); approve it and wait for its "
                        "first, preliminary result")
    last = finished[-1]
    if last.final:
        raise RungError(f"#{candidate_id} is already measured at full fidelity; nothing to promote")
    if c.status in ("queued", "running"):
        raise RungError(f"#{candidate_id} is already {c.status} at its next rung")
    job = store.get_job(last.job_id) if last.job_id is not None else None
    if job is None:
        raise RungError(f"#{candidate_id}'s rung has no job to continue from")
    who = f"user:{actor}"
    with store.transaction():
        rows.set_decision(store, last.id, "promoted", who)
        out = _queue_next(store, rung_meta(job), candidate_id, c.run_id, who)
    return out


def stop(store: Store, candidate_id: int, actor: str = "user") -> Any:
    """Stop a candidate's queued or running rung job; a preliminary result it has stays.

    Raises:
        RungError: nothing of it is queued or running at a rung.
    """

    c = store.get_candidate(candidate_id)
    jobs = [j for j in store.list_jobs(candidate_id=candidate_id, status=("queued", "running"))]
    finished = rows.list_rungs(store, candidate_id=candidate_id)
    if not jobs:
        if finished and finished[-1].final:
            raise RungError(f"#{candidate_id} is already measured at full fidelity; nothing to stop")
        if finished and finished[-1].decision == "stopped":
            raise RungError(f"#{candidate_id} is already stopped after {finished[-1].fidelity}")
        raise RungError(f"#{candidate_id} is {c.status}; only a queued or running candidate can be stopped")
    job = jobs[-1]
    if job.kind != RUNG_KIND:
        raise RungError(f"#{candidate_id}'s {job.kind} job is not a rung; cancel it on the Jobs view instead")
    who = f"user:{actor}"
    with store.transaction():
        if finished:
            rows.set_decision(store, finished[-1].id, "stopped", who)
        out = store.cancel_job(job.id, actor)
        if out.status == "cancelled":
            after_cancel(store, job.id)
    return store.get_job(job.id)


def queue_remeasure(store: Store, candidate_id: int, seed: int | None = None, actor: str = "user") -> Any:
    """Queue one more training of a measured candidate with another initialisation seed (same split).

    Args:
        store: the open store.
        candidate_id: a candidate with full-fidelity metrics.
        seed: the new initialisation seed (default: one more than the largest used so far).
        actor: who asked.

    Raises:
        RungError: the candidate has no full-fidelity result, or the seed was used already.
    """
    c = store.get_candidate(candidate_id)
    if c.metrics is None or c.metrics.estimate:
        raise RungError(f"#{candidate_id} has no full-fidelity result to re-measure; wait for it (or promote it)")
    full = _full_request(store, candidate_id)
    if full is None:
        raise RungError(f"#{candidate_id} was not trained from scratch by a job; it cannot be re-measured")
    used = set(_seeds_used(store, c, full))
    if seed is None:
        seed = max(used) + 1
    if int(seed) in used:
        raise RungError(f"seed {seed} was used for #{candidate_id} already (used: {sorted(used)}); pick another")
    payload = {**full, "weights_out": None, REMEASURE_KEY: {"init_seed": int(seed), "candidate_id": candidate_id}}
    return store.enqueue_job(REMEASURE_KIND, payload, run_id=c.run_id, actor=actor)


def _full_request(store: Store, candidate_id: int) -> dict[str, Any] | None:
    """The full-fidelity EvalRequest dict the candidate's final result came from (None if none)."""
    for job in reversed(store.list_jobs(candidate_id=candidate_id, status="done")):
        if job.kind == RUNG_KIND and rung_meta(job).get("final"):
            return split_payload(job.payload, HALVING_KEY)[0]
        if job.kind == "evaluate":
            return job.payload
    return None


def _original_seed(request: Mapping[str, Any]) -> int:
    train = request.get("train") or {}
    init = train.get("init_seed")
    return int(train.get("seed", 0) if init is None else init)


def _seeds_used(store: Store, c: Any, full: Mapping[str, Any]) -> list[int]:

    seeds = [_original_seed(full)]
    seeds += [r.seed for r in rows.list_remeasures(store, c.id)]
    for job in store.list_jobs(run_id=c.run_id, status=("queued", "running")):
        meta = split_payload(job.payload, REMEASURE_KEY)[1]
        if job.kind == REMEASURE_KIND and meta.get("candidate_id") == c.id:
            seeds.append(int(meta["init_seed"]))
    return seeds


# ---------------------------------------------------------------------------------------------
# Read models


@dataclass(frozen=True)
class CandidateRungs:
    """Where one candidate stands on the ladder, for the Search page and the CLI."""

    candidate_id: int
    rung: int  # 1-based rung it is on (running/queued) or last finished; 0 = not started
    rungs: int  # steps in the run's ladder
    state: str  # waiting | queued | running | promoted | stopped | final | failed | cancelled
    fidelity: str  # label of that rung
    preliminary: bool  # True while its latest result is below full fidelity
    val_acc: float | None  # latest finished rung's numbers (None before any)
    test_acc: float | None
    unfairness: float | None
    result_fidelity: str  # label of the rung those numbers come from
    rank: int | None  # rank by the pruner's score among the run's candidates at that rung (1 = best)
    ranked: int  # how many candidates finished that rung
    decided_by: str
    can_promote: bool
    can_stop: bool
    history: tuple[Any, ...] = field(default=())  # its RungRecords, oldest first

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (CLI --json)."""
        d = dataclasses.asdict(self)
        d["history"] = [{"rung": r.rung + 1, "fidelity": r.fidelity, "val_acc": r.val_acc, "test_acc": r.test_acc,
                         "unfairness": r.unfairness, "decision": r.decision, "decided_by": r.decided_by,
                         "seconds": r.seconds, "cpu_s": r.cpu_s} for r in self.history]
        return d

    def to_text(self) -> str:
        """One line: ``#3 rung 1/2 stopped (pruner): PRELIMINARY (1 epoch at 32 px) val acc ..., rank 2 of 3``."""
        head = f"#{self.candidate_id} rung {self.rung}/{self.rungs}"
        if self.state != "final":
            head += f" {self.state}" + (f" ({self.decided_by})" if self.decided_by else "")
        if self.test_acc is None:
            return head + (f": {self.fidelity}" if self.fidelity else "")
        kind = "PRELIMINARY" if self.preliminary else "final"
        text = (f"{head}: {kind} ({self.result_fidelity.split(': ', 1)[-1]}) val acc {_f(self.val_acc)}, "
                f"test acc {_f(self.test_acc)}, unfairness {_f(self.unfairness)}")
        if self.rank is not None:
            text += f", rank {self.rank} of {self.ranked} at this rung"
        return text


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def candidate_rungs(store: Store, run_id: int) -> dict[int, CandidateRungs]:
    """Every searched candidate of the run that entered the ladder, by id."""
    from nas_core.runconfig import RunConfig

    config = RunConfig.from_dict(store.get_run(run_id).config)
    n_steps = len(ladder(config.halving, config.train))
    all_rows = rows.list_rungs(store, run_id=run_id)
    by_cand: dict[int, list[Any]] = {}
    by_rung: dict[int, list[Any]] = {}
    for r in all_rows:
        by_cand.setdefault(r.candidate_id, []).append(r)
        by_rung.setdefault(r.rung, []).append(r)
    active_jobs: dict[int, Any] = {}
    for j in store.list_jobs(run_id=run_id, status=("queued", "running")):
        if j.kind == RUNG_KIND and j.candidate_id is not None:
            active_jobs[j.candidate_id] = j
    rung_cands = {j.candidate_id for j in store.list_jobs(run_id=run_id) if j.kind == RUNG_KIND}
    out: dict[int, CandidateRungs] = {}
    for c in store.list_candidates(run_id):
        if c.id not in rung_cands:
            continue
        hist = tuple(by_cand.get(c.id, ()))
        last = hist[-1] if hist else None
        job = active_jobs.get(c.id)
        if job is not None:
            p = rung_meta(job)
            rung, fidelity, state = int(p["rung"]) + 1, str(p["fidelity"]), job.status
            n_steps = int(p.get("rungs", n_steps))
        elif last is not None:
            rung, fidelity = last.rung + 1, last.fidelity
            state = last.decision or "waiting"
            if c.status in ("failed", "cancelled"):
                state = c.status
        else:
            rung, fidelity, state = 0, "", c.status
        rank = ranked = None
        if last is not None and last.score is not None and not last.final:  # full results rank on Results
            peers = [r.score for r in by_rung.get(last.rung, ()) if r.score is not None]
            rank, ranked = 1 + sum(1 for s in peers if s > last.score), len(peers)
        out[c.id] = CandidateRungs(
            candidate_id=c.id, rung=rung, rungs=n_steps, state=state, fidelity=fidelity,
            preliminary=last is not None and not last.final,
            val_acc=None if last is None else last.val_acc,
            test_acc=None if last is None else last.test_acc,
            unfairness=None if last is None else last.unfairness,
            result_fidelity="" if last is None else last.fidelity,
            rank=rank, ranked=ranked or 0,
            decided_by="" if last is None or job is not None else last.decided_by,
            can_promote=job is None and last is not None and not last.final
            and c.status in ("done", "failed", "cancelled"),
            can_stop=job is not None,
            history=hist,
        )
    return out


@dataclass(frozen=True)
class SeedSpread:
    """A candidate's results over initialisation seeds on the same split (the first is the original)."""

    candidate_id: int
    seeds: tuple[int, ...]
    test_acc: tuple[float, ...]
    unfairness: tuple[float | None, ...]
    pending: int  # re-measurements queued or running

    @property
    def n(self) -> int:
        """How many results."""
        return len(self.seeds)

    @property
    def acc_sd(self) -> float | None:
        """Sample standard deviation of test accuracy over seeds (None below 2 results)."""
        return statistics.stdev(self.test_acc) if self.n >= 2 else None

    @property
    def acc_range(self) -> tuple[float, float] | None:
        """(min, max) test accuracy over seeds (None below 2 results)."""
        return (min(self.test_acc), max(self.test_acc)) if self.n >= 2 else None

    @property
    def unfairness_sd(self) -> float | None:
        """Sample standard deviation of Unfairness over seeds (None below 2 defined values)."""
        vals = [u for u in self.unfairness if u is not None]
        return statistics.stdev(vals) if len(vals) >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (CLI --json)."""
        return {"candidate_id": self.candidate_id, "seeds": list(self.seeds), "test_acc": list(self.test_acc),
                "unfairness": list(self.unfairness), "acc_sd": self.acc_sd, "acc_range": self.acc_range,
                "unfairness_sd": self.unfairness_sd, "pending": self.pending}

    def to_text(self) -> str:
        """One line for the CLI and the Results page."""
        if self.n < 2:
            more = f" ({self.pending} re-measurement(s) queued)" if self.pending else ""
            return f"#{self.candidate_id}: measured with 1 seed only; re-measure it to see the seed spread{more}"
        lo, hi = self.acc_range or (0.0, 0.0)
        text = (f"#{self.candidate_id}: over {self.n} initialisation seeds {list(self.seeds)} on the same split, "
                f"test accuracy SD {100 * (self.acc_sd or 0):.2f} points (range {100 * lo:.2f}-{100 * hi:.2f}%)")
        if self.unfairness_sd is not None:
            text += f", Unfairness SD {self.unfairness_sd:.4f}"
        if self.pending:
            text += f" ({self.pending} more queued)"
        return text


def seed_spread(store: Store, candidate_id: int) -> SeedSpread:
    """The spread of a measured candidate over initialisation seeds.

    Raises:
        RungError: the candidate has no full-fidelity result.
    """

    c = store.get_candidate(candidate_id)
    if c.metrics is None or c.metrics.estimate:
        raise RungError(f"#{candidate_id} has no full-fidelity result yet")
    full = _full_request(store, candidate_id)
    seeds = [_original_seed(full or {})]
    accs = [float(c.metrics.test_acc)]
    unf = [c.metrics.fairness.unfairness]
    for r in rows.list_remeasures(store, candidate_id):
        if r.test_acc is None:
            continue
        seeds.append(r.seed)
        accs.append(r.test_acc)
        unf.append(r.unfairness)
    pending = sum(1 for j in store.list_jobs(run_id=c.run_id, status=("queued", "running"))
                  if j.kind == REMEASURE_KIND
                  and split_payload(j.payload, REMEASURE_KEY)[1].get("candidate_id") == candidate_id)
    return SeedSpread(candidate_id, tuple(seeds), tuple(accs), tuple(unf), pending)


# ---------------------------------------------------------------------------------------------
# The fidelity benchmark's plug-in (benchmarks/bench_fidelity.py asks modules for ``fidelity_estimates()``)


@dataclass(frozen=True)
class FidelityEstimate:
    """A fast fidelity for the fidelity benchmark: a name and a map of the run's TrainSettings."""

    name: str
    settings: Callable[[TrainSettings], TrainSettings]
    train_fraction: float = 1.0  # share of the training split kept (rungs use subsample instead)


def scaled_default_rung(full: TrainSettings) -> Rung:
    """The default first rung at ``full``'s scale: the same shares of its epochs and pixels.

    The default rung is sized for the default training (:data:`DEFAULT_FULL`); the fidelity
    benchmark's quick form trains less (5 epochs at 32 px), where the rung as written would be no
    cheaper. Scaled, the quick form measures what the rung does to the default training.
    """
    epochs0, size0 = DEFAULT_FULL.max_epochs, DEFAULT_FULL.image_size
    return Rung(epochs=max(1, math.ceil(full.max_epochs * DEFAULT_RUNG.epochs / epochs0)),
                image_size=max(8, round(full.image_size * (DEFAULT_RUNG.image_size or size0) / size0)))


def _first_rung(full: TrainSettings) -> TrainSettings:
    """The training settings of :func:`scaled_default_rung` (``full`` itself when it is not cheaper)."""
    return ladder(HalvingSettings(rungs=(scaled_default_rung(full),)), full)[0].train


def fidelity_estimates() -> list[FidelityEstimate]:
    """The default ladder's first rung, so the benchmark reports its Kendall tau against full training."""
    return [FidelityEstimate("SH rung 1 (default, scaled)", _first_rung)]
