"""The ``evaluate`` command: train and measure one architecture on a data set from the shell.

Owns argument parsing for ``python -m nas_core evaluate`` and the text form of its result
(the paper's optMetrics line plus a per-group table). The work itself is
:func:`nas_core.evaluator.evaluate`.

A spec given as a file (or inline JSON) is checked against the Choices (the shipped
default, or ``--choices FILE``) and the run's caps before any data is loaded, so a typo
costs a second, not a training run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas_core.cli import CliError, emit
from nas_core.records import Metrics
from nas_core.settings import PRECISION_HELP, PRECISIONS, Env, TrainSettings
from nas_core.space import ArchSpec, Choices, validate


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    p = subparsers.add_parser(
        "evaluate",
        help="train one architecture and measure accuracy, fairness and hardware costs",
        description="Train one architecture (a spec JSON file or baseline:NAME) with early stopping on "
                    "the data set's fixed split, then print every metric: losses, accuracies, per-group "
                    "accuracy, Unfairness, EODD, EOPP1, EOPP2 with bootstrap intervals, parameters, "
                    "MACs, latency, throughput and peak memory.",
    )
    p.add_argument("--dataset", required=True, help="data set folder (ISIC 2019, HAM10000, generic CSV, ...)")
    p.add_argument("--arch", required=True,
                   help="SPEC.json (a file or inline JSON) or baseline:NAME (resnet18, resnet34, "
                        "mobilenet_v1, mobilenet_v2)")
    d = TrainSettings()
    p.add_argument("--epochs", type=int, default=d.max_epochs, help=f"maximum epochs (default {d.max_epochs})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation loss (default {d.patience})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"training batch (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--optimizer", default=d.optimizer, choices=("adam", "adamw", "sgd"),
                   help=f"optimizer (default {d.optimizer})")
    p.add_argument("--image-size", type=int, default=d.image_size,
                   help=f"training resolution in px (default {d.image_size})")
    p.add_argument("--seed", type=int, default=d.seed, help="init seed: initialisation, batch order, flips")
    p.add_argument("--split-seed", type=int, default=d.split_seed,
                   help=f"seeds the train/val/test split and the subsample (default {d.split_seed})")
    p.add_argument("--min-group", type=int, default=d.min_group_size,
                   help=f"test groups with fewer images are flagged and left out of Unfairness "
                        f"(default {d.min_group_size})")
    p.add_argument("--subsample", type=int, default=None, help="balanced subsample of this many images")
    p.add_argument("--bootstrap", type=int, default=d.n_bootstrap,
                   help=f"bootstrap resamples for the intervals (default {d.n_bootstrap})")
    p.add_argument("--no-augment", action="store_true", help="no random flips")
    p.add_argument("--precision", default=d.precision, choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                   help="where to train and measure (default auto: CUDA when present)")
    e = Env()
    p.add_argument("--threads", type=int, default=e.threads, help=f"CPU threads for timing (default {e.threads})")
    p.add_argument("--latency-batch", type=int, default=e.batch_size,
                   help=f"inference batch size for latency (default {e.batch_size}, as in the FL-NAS paper)")
    p.add_argument("--repeats", type=int, default=e.repeats, help=f"timed runs (median; default {e.repeats})")
    p.add_argument("--choices", default=None, help="Choices JSON file to validate a spec against")
    p.add_argument("--cache-dir", default=None, help="decoded-image cache folder (default data/cache)")
    p.add_argument("--weights-out", default=None, help="save the best weights (state_dict) here")
    p.add_argument("--json", action="store_true", help="print the Metrics record as JSON")
    p.set_defaults(func=run_evaluate)


def _read_arch(text: str, choices_path: str | None, image_size: int) -> tuple[object, object]:
    """``baseline:NAME`` stays a string; a spec (file or inline JSON) becomes a validated ArchSpec.

    Returns:
        (arch, choices): choices is None for a baseline.
    """
    from nas_core.models.baselines import BASELINES

    if text.startswith("baseline:") or (text.lower() in BASELINES):
        name = text.split(":", 1)[-1].strip().lower()
        if name not in BASELINES:
            raise CliError(f"unknown baseline {name!r}; known baselines: {', '.join(sorted(BASELINES))}")
        return f"baseline:{name}", None
    if text.lstrip().startswith("{"):
        raw = text
    else:
        path = Path(text)
        if not path.is_file():
            raise CliError(f"--arch {text!r} is neither a spec file nor baseline:NAME "
                           f"(known baselines: {', '.join(sorted(BASELINES))})")
        raw = path.read_text()
    spec = ArchSpec.from_json(raw)  # SpecError (a UserError) names every bad field
    if choices_path:
        try:
            choices = Choices.from_dict(json.loads(Path(choices_path).read_text()))
        except FileNotFoundError as exc:
            raise CliError(f"--choices file {choices_path} not found") from exc
        except json.JSONDecodeError as exc:
            raise CliError(f"--choices file {choices_path} is not valid JSON: {exc}") from exc
    else:
        choices = Choices.default()
    errors = validate(spec, choices, image_size)
    if errors:
        raise CliError("invalid spec: " + "; ".join(errors))
    return spec, choices


def group_table(m: Metrics) -> str:
    """A short per-group table: attribute, group, n, accuracy and its bootstrap interval."""
    lines = m.fairness.group_lines()
    intervals = ", ".join(
        f"{name} [{lo:.3f}, {hi:.3f}]" for name, lo, hi in m.fairness.ci
    )
    if intervals:
        lines.append(f"bootstrap {m.fairness.n_bootstrap}x: {intervals}")
    lines.append(f"epochs {m.epochs} (best {m.best_epoch}), {m.train_seconds:.1f} s"
                 f"{f' with {m.threads} torch thread(s)' if m.threads else ''}"
                 f"{', trained in bf16' if m.precision == 'bf16' else ''}; "
                 f"balanced accuracy {100 * m.balanced_acc:.2f}%")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``evaluate``."""
    from nas_core.evaluator import EvalRequest, evaluate, load_prepared

    if not Path(args.dataset).exists():
        raise CliError(f"--dataset {args.dataset} does not exist; give a data set folder "
                       "(python -m nas_core datasets make-default creates one)")
    arch, choices = _read_arch(args.arch, args.choices, args.image_size)
    train = TrainSettings(
        optimizer=args.optimizer,
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        image_size=args.image_size,
        seed=args.seed,
        split_seed=args.split_seed,
        min_group_size=args.min_group,
        augment=not args.no_augment,
        subsample=args.subsample,
        n_bootstrap=args.bootstrap,
        precision=args.precision,
    )
    env = Env(device=args.device, threads=args.threads, batch_size=args.latency_batch, repeats=args.repeats)
    request = EvalRequest(dataset=args.dataset, arch=arch, train=train, env=env,
                          weights_out=args.weights_out, device=args.device, cache_dir=args.cache_dir)

    def progress(p: object) -> None:
        # stderr, so stdout stays the result alone (clean JSON with --json)
        sys.stderr.write(f"epoch {p.epoch}/{p.max_epochs}: train loss {p.train_loss:.4f}, "
                         f"val loss {p.val_loss:.4f}, val acc {100 * p.val_acc:.1f}%\n")

    prepared = load_prepared(request)
    if choices is not None:
        from nas_core.models import validate_full

        errors = validate_full(arch, choices, tuple(prepared.images.shape[1:]), len(prepared.class_names))
        if errors:
            raise CliError("invalid spec for this data set: " + "; ".join(errors))
    metrics = evaluate(request, progress=progress, prepared=prepared)
    emit(args, metrics.to_dict(), metrics.to_text() + "\n\n" + group_table(metrics))
    return 0
