"""The ``fairness`` command: audit any model's predictions from a CSV file.

Owns parsing of the predictions CSV and of ``--attr`` specifications, and the text form of a
:class:`~nas_core.records.FairnessReport`. The numbers come from
:func:`nas_core.metrics.fairness.fairness_report`; group labels are derived by
:mod:`nas_core.data.groups`, exactly as for a data set (sex normalization, age bins,
missing -> ``unknown``).

``--attr`` forms:

- ``COL``: a categorical column (a column named ``sex`` is normalized: M/F, case, spaces);
- ``COL:bins=30,65``: a numeric age column binned at the edges: with two edges the groups are
  young / middle / old; otherwise ``<a``, ``a-b``, ..., ``>z``. Add ``:labels=a,b,c`` to name them.

Classes are the values found in the label and prediction columns (numerically sorted when
all are integers, else alphabetically), or ``--classes A,B,C`` to fix names and order. Either way
EODD/EOPP count only the classes that occur in the file (as a label or a prediction), the rule
``evaluate`` follows with the data set's class list, so both give the same numbers on the same
predictions (:mod:`nas_core.metrics.fairness`).

Groups with fewer than ``--min-group`` rows (default
:data:`~nas_core.metrics.fairness.MIN_GROUP_SIZE`) are marked ``small`` in the text and JSON and
left out of Unfairness.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np

from nas_core.cli import CliError, emit
from nas_core.data.groups import derive_attributes
from nas_core.data.index import AttributeSpec
from nas_core.metrics.fairness import MIN_GROUP_SIZE, fairness_report
from nas_core.records import FairnessReport

DEFAULT_AGE_LABELS = ("young", "middle", "old")


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fairness`` command."""
    p = subparsers.add_parser(
        "fairness",
        help="fairness report of any model's predictions (a CSV with labels, predictions, groups)",
        description="Audit the predictions of any model: per-group accuracy and TPR/FPR/TNR, "
                    "Unfairness, EODD, EOPP1 and EOPP2 per pair of groups, per attribute and overall, "
                    "with bootstrap intervals. Rows with a missing group value count in the overall "
                    "accuracy and are reported as 'unknown', but are left out of the fairness metrics.",
    )
    p.add_argument("predictions", help="CSV file with one row per image")
    p.add_argument("--label-col", required=True, help="column of the true class")
    p.add_argument("--pred-col", required=True, help="column of the predicted class")
    p.add_argument("--attr", action="append", default=None, metavar="COL[:bins=A,B][:labels=X,Y,Z]",
                   help="demographic column (repeatable); e.g. --attr sex --attr age_approx:bins=30,65")
    p.add_argument("--classes", default=None, help="class names in order, comma-separated (default: found)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default 200; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--min-group", type=int, default=None, metavar="N",
                   help="groups with fewer rows are flagged small and left out of Unfairness "
                        "(default 10; 0 = count every group)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_fairness)


def parse_attr(text: str) -> AttributeSpec:
    """``COL``, ``COL:bins=30,65`` or ``COL:bins=..:labels=..`` -> AttributeSpec.

    Raises:
        CliError: an option other than bins/labels, numbers that are not numbers, or labels
            that do not fit the bins.
    """
    parts = text.split(":")
    column = parts[0].strip()
    if not column:
        raise CliError(f"--attr {text!r} has no column name; use COL or COL:bins=30,65")
    bins: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    for opt in parts[1:]:
        key, _, value = opt.partition("=")
        key = key.strip()
        if key == "bins":
            try:
                bins = tuple(float(v) for v in value.split(",") if v.strip())
            except ValueError as exc:
                raise CliError(f"--attr {text!r}: bins must be numbers separated by commas, "
                               f"e.g. bins=30,65") from exc
            if not bins or any(b >= a for b, a in zip(bins, bins[1:])):
                raise CliError(f"--attr {text!r}: bins must be increasing numbers, e.g. bins=30,65")
        elif key == "labels":
            labels = tuple(v.strip() for v in value.split(",") if v.strip())
        else:
            raise CliError(f"--attr {text!r}: unknown option {key!r}; use bins=... and labels=...")
    if bins is None:
        if labels is not None:
            raise CliError(f"--attr {text!r}: labels= needs bins= (labels name the age bins)")
        return AttributeSpec(name=column, column=column)
    if labels is None:
        labels = DEFAULT_AGE_LABELS if len(bins) == 2 else _range_labels(bins)
    if len(labels) != len(bins) + 1:
        raise CliError(f"--attr {text!r}: {len(bins)} bin edge(s) make {len(bins) + 1} groups, "
                       f"but {len(labels)} label(s) were given")
    return AttributeSpec(name=column, column=column, kind="age", bins=bins, labels=labels)


def _range_labels(bins: tuple[float, ...]) -> tuple[str, ...]:
    def f(x: float) -> str:
        return f"{x:g}"

    inner = [f"{f(a)}-{f(b)}" for a, b in zip(bins, bins[1:])]
    return (f"<{f(bins[0])}", *inner, f">{f(bins[-1])}")


def _read_csv(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    if not path.is_file():
        raise CliError(f"predictions file {path} not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CliError(f"{path} is not a readable CSV file ({exc})") from exc
    if not header:
        raise CliError(f"{path} is empty; it needs a header row and one row per prediction")
    columns = {h: [(r.get(h) or "").strip() for r in rows] for h in header}
    return header, columns


def _class_names(labels: list[str], preds: list[str], given: str | None) -> tuple[str, ...]:
    if given:
        names = tuple(c.strip() for c in given.split(",") if c.strip())
        unknown = sorted((set(labels) | set(preds)) - set(names))
        if unknown:
            raise CliError(f"values {unknown[:5]} are not among --classes {list(names)}")
        return names
    found = set(labels) | set(preds)
    try:
        return tuple(sorted(found, key=int))
    except ValueError:
        return tuple(sorted(found))


def report_text(r: FairnessReport, problems: tuple[str, ...] = ()) -> str:
    """The report as a few readable tables."""

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    def ci(name: str) -> str:
        iv = r.interval(name)
        return "" if iv is None else f"  [{iv[0]:.4f}, {iv[1]:.4f}]"

    lines = [f"{r.n} predictions, overall accuracy {100 * r.overall_accuracy:.2f}%"]
    for name in ("unfairness", "eodd", "eopp1", "eopp2"):
        lines.append(f"  {name.upper() if name != 'unfairness' else 'Unfairness':<11} "
                     f"{num(getattr(r, name))}{ci(name)}")
    if r.n_bootstrap:
        lines.append(f"  (intervals: {r.n_bootstrap} bootstrap resamples of the predictions)")
    lines.append("")
    lines.extend(r.group_lines())
    lines.append("")
    lines.append(f"{'attribute':<14} {'Unfairness':>10} {'EODD':>8} {'EOPP1':>8} {'EOPP2':>8}")
    for a in r.attributes:
        lines.append(f"{a.attribute:<14} {num(a.unfairness):>10} {num(a.eodd):>8} {num(a.eopp1):>8} "
                     f"{num(a.eopp2):>8}")
    lines.append("")
    lines.append(f"{'pair':<30} {'EODD':>8} {'EOPP1':>8} {'EOPP2':>8}  classes counted")
    for p in r.pairs:
        pair = f"{p.attribute}: {p.group_a} vs {p.group_b}"
        lines.append(f"{pair:<30} {num(p.eodd):>8} {num(p.eopp1):>8} {num(p.eopp2):>8}  "
                     f"{p.n_classes_eodd}/{p.n_classes_eopp1}/{p.n_classes_eopp2}")
    small = [f"{g.attribute}={g.group} ({g.n})" for g in r.groups if g.small]
    if small:
        lines.append("")
        lines.append(f"note: {len(small)} small group(s) with fewer than {r.min_group_size} predictions, "
                     f"left out of Unfairness: {', '.join(small)}")
    if problems:
        lines.append("")
        lines.extend(f"note: {x}" for x in problems)
    return "\n".join(lines)


def run_fairness(args: argparse.Namespace) -> int:
    """Handler of ``fairness``."""
    path = Path(args.predictions)
    header, columns = _read_csv(path)
    specs = [parse_attr(a) for a in (args.attr or [])]
    wanted = [args.label_col, args.pred_col, *(s.column for s in specs)]
    missing = [c for c in dict.fromkeys(wanted) if c not in columns]
    if missing:
        raise CliError(f"{path.name} has no column(s) {missing}; its columns are: {', '.join(header)}")
    labels, preds = columns[args.label_col], columns[args.pred_col]
    empty = [i + 2 for i, (a, b) in enumerate(zip(labels, preds)) if not a or not b]  # +2: header, 1-based
    if empty:
        raise CliError(f"{path.name}: {len(empty)} row(s) have an empty label or prediction "
                       f"(lines {empty[:5]}); fill or remove them")
    class_names = _class_names(labels, preds, args.classes)
    pos = {c: i for i, c in enumerate(class_names)}
    attributes, problems = derive_attributes(columns, specs, source=path.name)
    report = fairness_report(
        np.array([pos[v] for v in labels], dtype=np.int64),
        np.array([pos[v] for v in preds], dtype=np.int64),
        attributes,
        class_names,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        ci=args.ci,
        group_order={s.name: s.labels for s in specs if s.kind == "age"},
        min_group_size=MIN_GROUP_SIZE if args.min_group is None else args.min_group,
    )
    payload = {"class_names": list(class_names), "problems": list(problems), **dataclasses.asdict(report)}
    emit(args, payload, report_text(report, tuple(problems)))
    return 0
