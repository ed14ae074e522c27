"""Iteration benchmark: time from approval to the first (preliminary) and to the final result.

One demo iteration (heuristic engine, its first proposal = the default spec, default settings)
is run twice in this process on fresh stores, one after the other, through the real worker
(``nas_core.worker.Worker``, its handler in a thread of this process):

- **today's recipe**: successive halving off, the approved candidate trains at full fidelity;
  its first result is its final result;
- **successive halving** (the default ladder, :mod:`nas_core.rungs`): a preliminary rung
  (1 epoch at 32 px) first, then, since the first candidate of a run always continues, full
  fidelity.

For each it prints wall and CPU seconds (``time.process_time`` of this process: all its threads)
from the approval to the first result and to the final one, and the ratios halving / today.
Before timing, both resolutions' decoded-image caches are written and one short evaluation runs
untimed, so neither mode pays for the first decode or this process's one-time costs; the in-memory
data cache is cleared before each mode, so both load from disk alike.

Forms: full (``data/default``, generated with the default generator if missing, default
TrainSettings: 64 px, up to 10 epochs) and ``--quick`` (a generated 1,200-image copy, 48 px, up to
4 epochs; a couple of CPU-minutes).

Run: ``python -m benchmarks iteration [--quick]``.
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks iteration``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks iteration", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small generated data set and a short schedule")
    p.add_argument("--dataset", default=None, help="data set folder (default: data/default, or the quick copy)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
