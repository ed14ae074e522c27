"""The ``supernet`` command group: train a super-network, measure a sub-network, list what exists.

Owns ``python -m nas_core supernet train|measure|calibrate|finetune|status``. ``train`` runs in this
process with progress on stderr (resuming a stopped training), or with ``--queue``
queues a ``supernet_train`` job for a worker; either way the checkpoint is registered
in the store. ``measure`` estimates one sub-network's Metrics in seconds. ``calibrate``
(opt-in, minutes) trains a few sub-networks from scratch and records how well the estimates
rank them, beside the seed-vs-seed noise ceiling; ``finetune`` turns one estimate into a
normal, measured candidate. ``status`` lists the registered super-networks (and unregistered
checkpoint files) with their measured ranking.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

from nas_core.cli import CliError, emit
from nas_core.settings import Env, TrainSettings
from nas_core.space import ArchSpec
from nas_core.store import Store
from nas_core.supernet.calibrate import describe, run_calibration
from nas_core.supernet.space import (
    SubnetConfig,
    SupernetSpaceConfig,
    check_config,
    largest,
    sample_config,
    smallest,
    spec_to_config,
    to_arch_spec,
)

log = logging.getLogger(__name__)


def register_cli(subparsers: Any) -> None:
    """Add the ``supernet`` command group."""
    p = subparsers.add_parser(
        "supernet",
        help="train an elastic super-network once, then measure sub-networks in seconds",
        description="Super-network mode: train once on a data set's split, then estimate any sub-network.",
    )
    sub = p.add_subparsers(dest="supernet_command", metavar="SUBCOMMAND")

    t = sub.add_parser("train", help="train (or resume) the super-network of a data set")
    t.add_argument("--db", required=True, help="the EquiNAS database (the checkpoint is registered there)")
    t.add_argument("--dataset", required=True, help="data set folder")
    t.add_argument(
        "--epochs", type=int, default=None, help="most epochs (default 12; early stopping may end sooner)"
    )
    t.add_argument(
        "--patience", type=int, default=5, help="epochs without a better validation loss before stopping"
    )
    t.add_argument("--image-size", type=int, default=64, help="square training resolution (default 64)")
    t.add_argument("--seed", type=int, default=0, help="split and training seed (use the run's seed)")
    t.add_argument("--subsample", type=int, default=None, help="balanced subsample of this many images")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument(
        "--n-random", type=int, default=None, help="random sub-networks per step besides largest/smallest (2)"
    )
    t.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate (3e-3)")
    t.add_argument("--schedule", default=None, choices=["cosine", "constant"], help="learning-rate schedule")
    t.add_argument(
        "--train-scale", type=float, default=None,
        help="train at this share of --image-size (0.75: 64 -> 48 px); sub-networks are measured at that "
             "resolution too, their hardware costs at --image-size",
    )
    t.add_argument(
        "--progressive", type=float, default=None,
        help="share of epochs that train only the largest before progressive shrinking (0 = off)",
    )
    t.add_argument(
        "--no-distill", action="store_true", help="train sub-networks on labels, not on the largest's output"
    )
    t.add_argument("--space", default="default", help="'default', 'tiny' or a JSON file of a space config")
    t.add_argument("--out", default=None, help="checkpoint file (default: data/checkpoints/supernets/...)")
    t.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (use 1 on a machine busy with other work)",
    )
    t.add_argument(
        "--fresh", action="store_true", help="start over instead of resuming an existing checkpoint"
    )
    t.add_argument("--queue", action="store_true", help="queue a job for the worker instead of training here")
    t.add_argument("--json", action="store_true", help="print JSON")
    t.set_defaults(func=_train)

    m = sub.add_parser("measure", help="estimate the metrics of one sub-network")
    m.add_argument("--db", default=None, help="database whose registered super-networks to use")
    m.add_argument(
        "--config",
        required=True,
        help="largest | smallest | random | a JSON file or text: a sub-network config or an architecture spec",
    )
    m.add_argument(
        "--checkpoint", default=None, help="super-network checkpoint (default: the newest registered)"
    )
    m.add_argument("--dataset", default=None, help="data set folder (default: the one it was trained on)")
    m.add_argument(
        "--split", default="val", choices=["val", "test"], help="val while searching, test to report"
    )
    m.add_argument("--calib-batches", type=int, default=4, help="training batches for BN recalibration")
    m.add_argument("--seed", type=int, default=0, help="seed for 'random'")
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (also used for latency)")
    m.add_argument("--json", action="store_true", help="print the Metrics record as JSON")
    m.set_defaults(func=_measure)

    c = sub.add_parser(
        "calibrate",
        help="measure how well the super-network ranks: train a few sub-networks from scratch (slow, opt-in)",
        description="Train N sub-networks (smallest to largest) from scratch with two seeds each and store the "
        "Kendall tau of the super-network's estimates against them, beside the seed-vs-seed noise ceiling.",
    )
    c.add_argument("--db", default=None, help="database: its newest trained super-network, and where to record it")
    c.add_argument("--checkpoint", default=None, help="super-network checkpoint (default: the newest registered)")
    c.add_argument("--dataset", default=None, help="data set folder (default: the one it was trained on)")
    c.add_argument("--n", type=int, default=8, help="sub-networks trained from scratch (default 8)")
    c.add_argument("--seeds", type=int, default=2, help="initialization seeds each (2 give the noise ceiling)")
    c.add_argument("--epochs", type=int, default=None, help="from-scratch epochs (default: the run's 10)")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    c.add_argument("--queue", action="store_true", help="queue a supernet_calibrate job for the worker")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_calibrate)

    f = sub.add_parser(
        "finetune",
        help="fine-tune one sub-network from its inherited weights and measure it like any candidate",
        description="Extract a sub-network, train it further with the run's settings (or from scratch) and "
        "measure it on the test split: a normal, non-estimate result.",
    )
    f.add_argument("--db", default=None, help="database whose newest trained super-network to use")
    f.add_argument("--checkpoint", default=None, help="super-network checkpoint (default: the newest registered)")
    f.add_argument("--dataset", default=None, help="data set folder (default: the one it was trained on)")
    f.add_argument(
        "--config", required=True,
        help="largest | smallest | random | a JSON file or text: a sub-network config or an architecture spec",
    )
    f.add_argument("--seed", type=int, default=0, help="seed for 'random'")
    f.add_argument("--epochs", type=int, default=None, help="most epochs (default: the run's 10)")
    f.add_argument("--from-scratch", action="store_true", help="fresh initialization instead of inherited weights")
    f.add_argument("--weights-out", default=None, help="save the trained weights (state_dict) here")
    f.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=_finetune)

    s = sub.add_parser("status", help="list trained super-networks")
    s.add_argument("--db", default=None, help="database whose registry to list")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _space(text: str) -> Any:
    if text == "default":
        return SupernetSpaceConfig()
    if text == "tiny":
        return SupernetSpaceConfig.tiny()
    path = Path(text)
    if not path.is_file():
        raise CliError(f"--space {text!r} is neither 'default', 'tiny' nor a JSON file")
    try:
        return SupernetSpaceConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise CliError(f"--space {text}: not valid JSON ({exc})") from exc


def _open_store(db: str) -> Any:
    return Store.open(db)


def _set_threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise CliError(f"--threads must be at least 1, got {n}")
        import torch

        torch.set_num_threads(n)


def _train(args: argparse.Namespace) -> int:
    from nas_core.supernet.jobs import TrainRequest, outcome_summary, run_training
    from nas_core.supernet.train import Stopped, SupernetTrainSettings

    _set_threads(args.threads)
    given = {
        "max_epochs": args.epochs,
        "n_random": args.n_random,
        "lr": args.lr,
        "schedule": args.schedule,
        "train_scale": args.train_scale,
        "progressive": args.progressive,
    }
    settings = SupernetTrainSettings(
        patience=args.patience,
        batch_size=args.batch_size,
        distill=not args.no_distill,
        seed=args.seed,
        **{k: v for k, v in given.items() if v is not None},
    )
    train = TrainSettings(image_size=args.image_size, seed=args.seed, subsample=args.subsample)
    if not Path(args.dataset).exists():
        raise CliError(
            f"data set folder {args.dataset} does not exist; give the folder of an imported data set"
        )
    out = str(Path(args.out).resolve()) if args.out else None
    if out and args.fresh:
        Path(out).unlink(missing_ok=True)
    req = TrainRequest(
        dataset=str(args.dataset),
        train=train,
        space=_space(args.space),
        settings=settings,
        checkpoint=out,
        db=str(Path(args.db).resolve()),
        device=args.device,
    )
    store = _open_store(args.db)
    try:
        if args.queue:
            job = store.enqueue_job("supernet_train", req.to_dict(), actor="cli")
            emit(
                args,
                {"job": job.id, "kind": "supernet_train"},
                f"queued super-network training as job {job.id}",
            )
            return 0
        if args.fresh and not out:
            from nas_core.supernet.jobs import checkpoint_path, load_prepared

            prepared = load_prepared(req.dataset, train)
            checkpoint_path(prepared.dataset_hash, train.image_size, prepared.split.seed, req.space).unlink(
                missing_ok=True
            )

        def progress(rec: dict[str, Any]) -> None:
            if args.json:
                return
            if rec.get("partial"):
                sys.stderr.write(f"{rec['message']} ({rec['fraction']:.0%})\n")
            else:
                sys.stderr.write(
                    f"{rec['message']}: train loss {rec['train_loss']:.4f}, "
                    f"largest val loss {rec['val_loss']:.4f}, val acc {rec['val_acc']:.3f} "
                    f"({rec['seconds']:.1f}s)\n"
                )

        try:
            outcome = run_training(req, progress, store=store)
        except Stopped as exc:
            raise CliError(str(exc)) from exc
    finally:
        store.close()
    meta = outcome.meta
    payload = outcome_summary(outcome)
    text = (
        f"super-network trained: {meta.epoch} epoch(s) ({meta.stopped_reason or 'not finished'}), "
        f"best largest-network validation loss {meta.best_val_loss:.4f} at epoch {meta.best_epoch}\n"
        f"checkpoint: {outcome.checkpoint}"
    )
    emit(args, payload, text)
    return 0


def _parse_config(text: str, space: Any, seed: int) -> Any:
    if text == "largest":
        return largest(space)
    if text == "smallest":
        return smallest(space)
    if text == "random":
        return sample_config(space, random.Random(seed))
    raw = text
    if not text.lstrip().startswith(("{", "[")):
        path = Path(text)
        if not path.is_file():
            raise CliError(f"--config {text!r} is not largest, smallest, random, a JSON file or JSON text")
        raw = path.read_text()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--config {text!r} is not largest, smallest, random, a JSON file or JSON text ({exc})"
        ) from exc
    if isinstance(data, dict) and "stem" in data:
        return spec_to_config(ArchSpec.from_dict(data), space)
    return check_config(SubnetConfig.from_dict(data), space)


def _resolve_checkpoint(args: argparse.Namespace) -> str:
    """--checkpoint, or the newest trained super-network registered in --db (for --dataset if given)."""
    from nas_core.supernet.checkpoint import CheckpointError

    if args.checkpoint is not None:
        return str(args.checkpoint)
    if args.db is None:
        raise CliError("give --checkpoint FILE or --db DB (to use its newest registered super-network)")
    from nas_core.supernet.registry import list_supernets

    store = _open_store(args.db)
    try:
        rows = [r for r in list_supernets(store) if r.status == "trained" and Path(r.path).is_file()]
    finally:
        store.close()
    if args.dataset:
        rows = [r for r in rows if Path(r.dataset).resolve() == Path(args.dataset).resolve()]
    if not rows:
        raise CheckpointError(
            f"no trained super-network is registered in {args.db}"
            + (f" for {args.dataset}" if args.dataset else "")
            + "; train one: python -m nas_core supernet train --db DB --dataset PATH"
        )
    return rows[0].path


def _measure(args: argparse.Namespace) -> int:
    from nas_core.supernet.checkpoint import check_usable, load_supernet
    from nas_core.supernet.jobs import load_prepared
    from nas_core.supernet.measure import measure_subnet

    _set_threads(args.threads)
    checkpoint = _resolve_checkpoint(args)
    loaded = load_supernet(checkpoint)
    meta = loaded.meta
    dataset = args.dataset or meta.dataset
    if not dataset:
        raise CliError("the checkpoint does not name its data set; give --dataset")
    train = TrainSettings(image_size=meta.image_size, seed=meta.seed, subsample=meta.subsample)
    prepared = load_prepared(dataset, train)
    check_usable(meta, dataset_hash=prepared.dataset_hash, image_size=meta.image_size, path=str(checkpoint))
    config = _parse_config(args.config, meta.space_config, args.seed)
    env = Env(threads=args.threads) if args.threads else Env()
    if meta.input_stats:
        from nas_core.supernet.measure import input_transform

        input_transform(prepared, meta.input_stats)  # seeds the cache: no pass over every training image
    metrics = measure_subnet(
        loaded.net, config, prepared, env, split=args.split, calib_batches=args.calib_batches
    )

    spec = to_arch_spec(config, meta.space_config)
    payload = {
        "config": config.to_dict(),
        "key": spec.key,
        "spec": spec.to_dict(),
        "metrics": metrics.to_dict(),
    }
    emit(args, payload, f"sub-network {spec.key} ({args.split} split)\n{metrics.to_text()}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    if args.n < 3 or args.seeds < 1:
        raise CliError(f"--n must be at least 3 and --seeds at least 1 (got {args.n}, {args.seeds})")
    checkpoint = str(Path(_resolve_checkpoint(args)).resolve())
    if args.queue:
        if args.db is None:
            raise CliError("--queue needs --db (the store whose worker runs the job)")
        payload = {"checkpoint": checkpoint, "n": args.n, "seeds": args.seeds, "db": str(Path(args.db).resolve())}
        if args.dataset:
            payload["dataset"] = args.dataset
        if args.epochs:
            payload["epochs"] = args.epochs
        store = _open_store(args.db)
        try:
            job = store.enqueue_job("supernet_calibrate", payload, actor="cli")
        finally:
            store.close()
        emit(args, {"job": job.id, "kind": "supernet_calibrate"}, f"queued calibration as job {job.id}")
        return 0

    def progress(rec: dict[str, Any]) -> None:
        if not args.json:
            sys.stderr.write(f"{rec['message']} ({rec['fraction']:.0%}, about {rec['eta_seconds'] / 60:.1f} min left)\n")

    result = run_calibration(checkpoint, args.dataset, n=args.n, seeds=args.seeds, epochs=args.epochs,
                             db=args.db, progress=progress)
    emit(args, {"checkpoint": checkpoint, **result.to_dict()},
         f"{describe(result.to_dict())}\n({result.trained} from-scratch trainings run now, the rest cached)\n"
         f"checkpoint: {checkpoint}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import dataclasses

    from nas_core.supernet.checkpoint import read_meta
    from nas_core.supernet.finetune import finetune
    from nas_core.supernet.jobs import load_prepared

    _set_threads(args.threads)
    checkpoint = _resolve_checkpoint(args)
    meta = read_meta(checkpoint)
    dataset = args.dataset or meta.dataset
    if not dataset:
        raise CliError("the checkpoint does not name its data set; give --dataset")
    train = TrainSettings(image_size=meta.image_size, seed=meta.seed, subsample=meta.subsample)
    if args.epochs is not None:
        train = dataclasses.replace(train, max_epochs=args.epochs)
    prepared = load_prepared(dataset, train)
    config = _parse_config(args.config, meta.space_config, args.seed)

    def progress(rec: Any) -> None:
        if not args.json:
            sys.stderr.write(f"epoch {rec.epoch}/{rec.max_epochs}: val loss {rec.val_loss:.4f}, "
                             f"val acc {rec.val_acc:.3f}\n")

    env = Env(threads=args.threads) if args.threads else Env()
    _, metrics = finetune(checkpoint, config, prepared, train, env=env, from_scratch=args.from_scratch,
                          device="cpu", progress=progress, weights_out=args.weights_out)

    spec = to_arch_spec(config, meta.space_config)
    how = "trained from scratch" if args.from_scratch else "fine-tuned from the super-network"
    emit(args, {"config": config.to_dict(), "key": spec.key, "spec": spec.to_dict(), "metrics": metrics.to_dict(),
                "from_scratch": bool(args.from_scratch)},
         f"sub-network {spec.key} {how} (test split, not an estimate)\n{metrics.to_text()}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from nas_core.supernet.checkpoint import CheckpointError, read_meta
    from nas_core.supernet.jobs import supernet_dir

    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    if args.db:
        from nas_core.studio_supernet import finetune_ranking
        from nas_core.supernet.registry import list_supernets

        store = _open_store(args.db)
        try:
            for r in list_supernets(store):
                seen.add(r.path)
                rows.append(
                    {
                        "id": r.id,
                        "path": r.path,
                        "dataset": r.dataset,
                        "image_size": r.image_size,
                        "seed": r.seed,
                        "status": r.status if Path(r.path).is_file() else "missing file",
                        "epoch": r.epoch,
                        "best_val_loss": r.best_val_loss,
                        "kendall_tau": r.kendall_tau,
                        "kendall_n": r.kendall_n,
                        "calibration": (r.meta or {}).get("calibration"),
                        # estimates vs what fine-tuning them measured (the app's "Fine-tune this estimate")
                        **dict(zip(("finetune_tau", "finetune_n"), finetune_ranking(store, r.path))),
                    }
                )
        finally:
            store.close()
    folder = supernet_dir()
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        if str(path.resolve()) in seen:
            continue
        try:
            meta = read_meta(path)
        except CheckpointError as exc:
            rows.append({"id": None, "path": str(path.resolve()), "status": f"unreadable: {exc}"})
            continue
        rows.append(
            {
                "id": None,
                "path": str(path.resolve()),
                "dataset": meta.dataset,
                "image_size": meta.image_size,
                "seed": meta.seed,
                "status": ("trained" if meta.complete else "training") + " (not registered)",
                "epoch": meta.epoch,
                "best_val_loss": meta.best_val_loss,
                "kendall_tau": meta.kendall_tau,
                "kendall_n": meta.kendall_n,
                "calibration": meta.calibration,
            }
        )
    if not rows:
        text = "no super-network yet; train one: python -m nas_core supernet train --db DB --dataset PATH"
    else:
        lines = []
        for r in rows:
            tau_text = describe(r.get("calibration"), r.get("kendall_tau"), r.get("kendall_n") or 0)
            if r.get("finetune_n"):
                tau = r.get("finetune_tau")
                tau_text += (f"; vs {r['finetune_n']} fine-tuned: Kendall tau "
                             + ("n/a (needs 3 with different results)" if tau is None else f"{tau:.2f}"))
            lines.append(
                f"{r['status']}: {r.get('dataset', '?')} at {r.get('image_size', '?')} px, seed {r.get('seed', '?')}, "
                f"epoch {r.get('epoch', '?')}; {tau_text}\n  {r['path']}"
            )
        text = "\n".join(lines)
    emit(args, {"supernets": rows}, text)
    return 0
