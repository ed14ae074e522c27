"""Iteration benchmark: time from approval to the first (preliminary) and to the final result.

One demo iteration (heuristic engine, its first proposal = the default spec, default settings)
is run twice in this process on fresh stores, one after the other, through the real worker
(``nas_core.worker.Worker``, its handler in a thread of this process):

- **today's recipe**: successive halving off, the approved candidate trains at full fidelity;
  its first result is its final result;
- **successive halving** (the default ladder, :mod:`nas_core.rungs`): a preliminary rung
  (5 epochs at 32 px, half the epochs at half the resolution) first, then, since the first candidate of a run always continues, full
  fidelity.

For each it prints wall and CPU seconds (``time.process_time`` of this process: all its threads)
from the approval to the first result and to the final one, and the ratios halving / today.
Before timing, both resolutions' decoded-image caches are written and one short evaluation runs
untimed, so neither mode pays for the first decode or this process's one-time costs; the in-memory
data cache is cleared before each mode, so both load from disk alike.

A second part, :func:`halving_quality`, checks the selection itself on the fidelity benchmark's
24 specs (its cached truth): the first rung's Kendall tau against full training and how often the
best spec survives the pruner over shuffled arrival orders. Without ``--rung`` it checks the default
rung at the truth's scale (:func:`nas_core.rungs.scaled_default_rung`: the quick form's 5 epochs at 32 px
give 3 epochs at 16 px).

Forms: full (``data/default``, generated with the default generator if missing, default
TrainSettings: 64 px, up to 10 epochs) and ``--quick`` (a generated 1,200-image copy, 48 px, up to
4 epochs; a couple of CPU-minutes).

Run: ``python -m benchmarks iteration [--quick] [--only timing|quality]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"n_images": 1200, "gen_size": 48, "image_size": 48, "max_epochs": 4, "patience": 2}


def _dataset(args: argparse.Namespace) -> Path:
    from nas_core.data.synthetic import make_default

    if args.dataset:
        return Path(args.dataset)
    if args.quick:
        path = ROOT / "data" / "cache" / "bench_iteration" / "quick"
        if not path.exists():
            make_default(path, n_images=QUICK["n_images"], image_size=QUICK["gen_size"], seed=0, workers=1)
        return path
    path = ROOT / "data" / "default"
    if not path.exists():
        make_default(path, seed=0, workers=1)
    return path


def _one(mode: str, dataset: Path, train: Any, threads: int) -> dict[str, Any]:
    from nas_core import evaluator
    from nas_core.runconfig import RunConfig
    from nas_core.rungs import HalvingSettings
    from nas_core.session import Session
    from nas_core.settings import Env
    from nas_core.store import Store
    from nas_core.store import rungs as rows
    from nas_core.worker import Worker

    evaluator.clear_prepared_cache()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        store = Store.open(db)
        cfg = RunConfig(name=f"bench {mode}", dataset=str(dataset), engine="heuristic", device="cpu",
                        train=train, env=Env(threads=threads),
                        halving=HalvingSettings(enabled=mode == "halving"))
        sess = Session.create_run(store, cfg)
        cand = sess.propose("bench")[0]
        worker = Worker(db, poll_s=0.01, heartbeat_s=1.0, stale_after_s=3600)
        w0, c0 = time.perf_counter(), time.process_time()
        sess.approve(cand.id, "bench")
        first = final = None
        fidelity = ""
        while final is None:
            if worker.run(once=True, max_jobs=1) == 0:
                break
            now = (time.perf_counter() - w0, time.process_time() - c0)
            done = rows.list_rungs(store, candidate_id=cand.id)
            if first is None and (done or store.get_candidate(cand.id).metrics is not None):
                first = now
                fidelity = done[0].fidelity if done else "full fidelity (no rung)"
            if store.get_candidate(cand.id).metrics is not None:
                final = now
        c = store.get_candidate(cand.id)
        prelim = rows.list_rungs(store, candidate_id=cand.id)
        store.close()
    if final is None or c.metrics is None:
        raise RuntimeError(f"{mode}: the candidate ended {c.status} without a final result: {c.error}")
    return {"mode": mode, "first_wall": first[0], "first_cpu": first[1], "final_wall": final[0],
            "final_cpu": final[1], "first_fidelity": fidelity, "final_acc": c.metrics.test_acc,
            "first_acc": prelim[0].test_acc if prelim and not prelim[0].final else c.metrics.test_acc}


def _warm_up(dataset: Path, train: Any) -> None:
    """One untimed short evaluation, so neither mode pays this process's one-time costs (imports, thread pools)."""
    import dataclasses

    from nas_core import evaluator
    from nas_core.settings import Env
    from nas_core.space import default_spec

    short = dataclasses.replace(train, max_epochs=1, image_size=32, n_bootstrap=10)
    evaluator.evaluate(evaluator.EvalRequest(dataset=str(dataset), arch=default_spec(), train=short,
                                             env=Env(repeats=2, warmup=1), device="cpu"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both modes, one after the other; prints the table and returns the figures."""
    import torch

    from nas_core.data.prepare import prepare
    from nas_core.rungs import HalvingSettings, ladder
    from nas_core.settings import TrainSettings

    torch.set_num_threads(args.threads)
    dataset = _dataset(args)
    train = TrainSettings()
    if args.quick:
        train = TrainSettings(image_size=QUICK["image_size"], max_epochs=QUICK["max_epochs"],
                              patience=QUICK["patience"])
    for step in ladder(HalvingSettings(), train):  # write the decoded-image caches before timing
        prepare(dataset, image_size=step.train.image_size, seed=step.train.seed, subsample=step.train.subsample,
                workers=1)
    _warm_up(dataset, train)
    out = {m: _one(m, dataset, train, args.threads) for m in ("today", "halving")}
    t, h = out["today"], out["halving"]
    sys.stdout.write(f"data set {dataset}, {args.threads} torch thread(s), full fidelity = "
                     f"up to {train.max_epochs} epochs at {train.image_size} px\n")
    sys.stdout.write(f"{'':<22} {'first result wall':>18} {'CPU':>8} {'final result wall':>18} {'CPU':>8}  "
                     f"first result's fidelity (test acc)\n")
    for r in (t, h):
        sys.stdout.write(f"{r['mode']:<22} {r['first_wall']:>17.1f}s {r['first_cpu']:>7.1f}s "
                         f"{r['final_wall']:>17.1f}s {r['final_cpu']:>7.1f}s  {r['first_fidelity']} "
                         f"({r['first_acc']:.3f}; final {r['final_acc']:.3f})\n")
    ratios = {k: h[k] / t[k] for k in ("first_wall", "first_cpu", "final_wall", "final_cpu")}
    sys.stdout.write(f"{'ratio halving / today':<22} {ratios['first_wall']:>18.3f} {ratios['first_cpu']:>8.3f} "
                     f"{ratios['final_wall']:>18.3f} {ratios['final_cpu']:>8.3f}\n")
    sys.stdout.write(f"targets (idle 2-core machine): first result <= 60 s wall: "
                     f"{'met' if h['first_wall'] <= 60 else 'MISSED'} ({h['first_wall']:.1f} s); final <= 180 s: "
                     f"{'met' if h['final_wall'] <= 180 else 'MISSED'} ({h['final_wall']:.1f} s)\n")
    out["ratios"] = ratios
    return out


def halving_quality(args: argparse.Namespace) -> dict[str, Any] | None:
    """How well the default first rung selects, on the fidelity benchmark's 24 specs and its cached truth.

    Trains every spec at the first rung (``--rung``: another ladder's first rung), then
    reports its Kendall tau against the seed-averaged full training (and against the noise ceiling,
    seed 0 vs seed 1), and, over ``--shuffles`` random arrival orders, how often Optuna's pruner
    (:func:`nas_core.rungs.asha_decisions`, the product's own decision) lets the truly best spec
    through, how many go on, and the CPU of successive halving against training every spec fully.
    Needs the fidelity benchmark's truth in its cache (``python -m benchmarks fidelity [--quick]``): it
    checks the specs whose two truth seeds are cached (and says so when that is not all of them), and is
    skipped with a message below 3, since training the truth here would cost the whole benchmark.
    """
    import dataclasses
    import hashlib
    import json
    import random
    import statistics

    from benchmarks import bench_fidelity as bf
    from nas_core.data.prepare import prepare
    from nas_core.evaluator import EvalRequest
    from nas_core.rungs import (
        HalvingSettings,
        _train_and_measure,
        asha_decisions,
        ladder,
        parse_ladder,
        scaled_default_rung,
    )
    from nas_core.settings import Env, TrainSettings

    base = TrainSettings()
    if args.quick:
        base = dataclasses.replace(base, image_size=bf.QUICK["image_size"], max_epochs=bf.QUICK["max_epochs"],
                                   patience=bf.QUICK["patience"])
    data = bf._dataset(argparse.Namespace(dataset=None, quick=args.quick))
    specs = bf.benchmark_specs()[: args.specs] if args.specs else bf.benchmark_specs()
    p_full = prepare(data, image_size=base.image_size, seed=bf.SPLIT_SEED)
    by_seed: dict[int, list[Any]] = {s: [] for s in bf.INIT_SEEDS}
    kept_specs = []
    for sp in specs:  # the specs whose truth (both seeds) is cached; the fidelity shards may still be filling it
        got = [bf.cached_result(sp, p_full, dataclasses.replace(base, seed=seed)) for seed in bf.INIT_SEEDS]
        if all(r is not None for r in got):
            kept_specs.append(sp)
            for seed, r in zip(bf.INIT_SEEDS, got, strict=True):
                by_seed[seed].append(r)
    if len(kept_specs) < 3:
        sys.stdout.write("halving quality: skipped, the fidelity benchmark's truth is cached for "
                         f"{len(kept_specs)} of {len(specs)} specs at these settings (3 needed); run "
                         f"`python -m benchmarks fidelity{' --quick' if args.quick else ''}` first\n")
        return None
    if len(kept_specs) < len(specs):
        sys.stdout.write(f"halving quality: the fidelity truth is cached for {len(kept_specs)} of {len(specs)} "
                         "specs; checking those only\n")
    specs = kept_specs
    truth = [statistics.mean(by_seed[s][i].test_acc for s in bf.INIT_SEEDS) for i in range(len(specs))]
    ceiling, _ = bf.rank_agreement([r.test_acc for r in by_seed[0]], [r.test_acc for r in by_seed[1]])
    full_cpu = statistics.mean(r.cpu_s for s in bf.INIT_SEEDS for r in by_seed[s])
    if args.rung:
        halving = HalvingSettings(rungs=parse_ladder(args.rung))
    else:  # the default rung at these settings' scale (the quick form trains 5 epochs at 32 px, not 10 at 64)
        halving = HalvingSettings(rungs=(scaled_default_rung(base),))
    step = ladder(halving, base)[0]
    if step.final:
        sys.stdout.write("halving quality: skipped, the rung is not cheaper than these settings\n")
        return None
    rung = dataclasses.replace(step.train, seed=0)
    p_rung = prepare(data, image_size=rung.image_size, seed=bf.SPLIT_SEED, subsample=rung.subsample)
    val, loss, test, cpu = [], [], [], []
    cache = bf.TRUTH / "rungs"  # kept in git beside the truth they are ranked against
    for sp in specs:
        key = json.dumps({"spec": sp.key, "train": rung.to_dict(), "data": p_rung.dataset_hash}, sort_keys=True)
        path = cache / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
        if path.is_file():  # a rerun costs only the decisions
            r = json.loads(path.read_text())
        else:
            c0 = time.process_time()
            m = _train_and_measure(EvalRequest(dataset=str(data), arch=sp, train=rung, env=Env(), device="cpu"),
                                   p_rung, None, None)
            r = {"cpu_s": time.process_time() - c0, "val_acc": m.val_acc, "val_loss": m.val_loss,
                 "test_acc": m.test_acc}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(r))
        cpu.append(r["cpu_s"])
        val.append(r["val_acc"])
        loss.append(None if r["val_loss"] is None else -r["val_loss"])
        test.append(r["test_acc"])
    metric = halving.metric
    by_metric = {"val_loss": loss, "val_acc": val}
    scores = by_metric[metric]
    tau_score, _ = bf.rank_agreement(scores, truth)
    tau_val, _ = bf.rank_agreement(val, truth)
    tau_loss, _ = bf.rank_agreement(loss, truth)
    tau_test, _ = bf.rank_agreement(test, truth)
    best = max(range(len(specs)), key=truth.__getitem__)
    kept_by: dict[str, int] = {}
    promoted_by: dict[str, float] = {}
    for name, values in by_metric.items():
        kept, promoted_n = 0, []
        for k in range(args.shuffles):
            order = list(range(len(specs)))
            random.Random(k).shuffle(order)
            decisions = asha_decisions([(i, 0, values[i]) for i in order], halving.reduction_factor)
            promoted = {i for i, d in zip(order, decisions, strict=True) if d}
            kept += best in promoted
            promoted_n.append(len(promoted))
        kept_by[name], promoted_by[name] = kept, statistics.mean(promoted_n)
    kept, promoted_mean = kept_by[metric], promoted_by[metric]
    other = "val_acc" if metric == "val_loss" else "val_loss"
    rung_cpu = statistics.mean(cpu)
    sh_cpu = len(specs) * rung_cpu + promoted_mean * full_cpu
    sys.stdout.write(
        f"\nhalving quality on the fidelity benchmark's {len(specs)} specs ({step.label}; full = "
        f"{base.max_epochs} epochs at {base.image_size} px):\n"
        f"  first rung vs seed-averaged full training: Kendall tau {tau_score:.3f} by {metric} (what the pruner "
        f"uses; validation accuracy {tau_val:.3f}, minus validation loss {tau_loss:.3f}, test accuracy "
        f"{tau_test:.3f}); noise ceiling {ceiling:.3f}; share of the ceiling "
        f"{tau_score / ceiling if ceiling > 0 else float('nan'):.2f} (target >= 0.7)\n"
        f"  best full-fidelity spec kept in {kept} of {args.shuffles} shuffled arrival orders (target >= 9 of 10); "
        f"{promoted_mean:.1f} of {len(specs)} go on to full fidelity on average (by {other}: kept "
        f"{kept_by[other]} of {args.shuffles}, {promoted_by[other]:.1f} go on)\n"
        f"  CPU per candidate: rung {rung_cpu:.1f} s vs full {full_cpu:.1f} s; successive halving over the "
        f"{len(specs)} specs {sh_cpu:.0f} s vs {len(specs) * full_cpu:.0f} s training all fully "
        f"(ratio {sh_cpu / (len(specs) * full_cpu):.2f})\n")
    return {"metric": metric, "tau_score": tau_score, "tau_val": tau_val, "tau_loss": tau_loss, "kept_by": kept_by, "tau_test": tau_test, "ceiling": ceiling, "kept": kept, "shuffles": args.shuffles,
            "promoted_mean": promoted_mean, "rung_cpu": rung_cpu, "full_cpu": full_cpu}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks iteration``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks iteration", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small generated data set and a short schedule")
    p.add_argument("--dataset", default=None, help="data set folder (default: data/default, or the quick copy)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--shuffles", type=int, default=10, help="arrival orders for the keeps-the-best check")
    p.add_argument("--rung", default=None, help="quality: check this first rung instead, e.g. 2@32")
    p.add_argument("--specs", type=int, default=None, help="quality: only the first N of the 24 specs")
    p.add_argument("--only", choices=("timing", "quality"), default=None, help="run one part only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.only != "quality":
        run(args)
    if args.only != "timing":
        halving_quality(args)
    return 0


if __name__ == "__main__":
    from nas_core.alloc import tune_for_training

    tune_for_training()  # trains like the worker does (nas_core.alloc)
    raise SystemExit(main(sys.argv[1:]))
