"""Demographic attributes: turning raw metadata cells into group labels, for every format.

Owns the rules every reader shares, so the ISIC 2019, HAM10000 and generic readers cannot
disagree on what a group is:

- **sex**: ``male``/``female`` in any case, with surrounding whitespace, or the letters
  ``M``/``F`` (also ``man``/``woman``). An empty cell (or ``nan``/``na``/``unknown``) is missing
  and becomes :data:`~nas_core.data.index.UNKNOWN`. Any *other* value also becomes ``unknown`` but
  is never silently swallowed: it is counted in :attr:`DerivedAttribute.unrecognized` and named in
  :attr:`DerivedAttribute.problems` (the validation report shows it; ``strict=True`` refuses it).
- **age**: a number (``"45"``, ``"45.0"``) binned by the attribute's edges. With the default edges
  ``(30, 65)`` the groups are ``young`` (age < 30), ``middle`` (30 <= age <= 65) and ``old``
  (age > 65), as the FL-NAS paper writes them. In general an age equal to an edge belongs to the
  bin *above* it, except the last edge, which belongs to the bin *below* it (so 65 is ``middle``).
  Text that is not a number (``"sixty"``), negative ages and ages over 130 are reported and
  become ``unknown``.
- **categorical** (site, Fitzpatrick type, ...): the stripped cell; empty means ``unknown``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from nas_core.data.index import UNKNOWN, AttributeSpec, DataError

SEX_ALIASES = {
    "male": "male",
    "m": "male",
    "man": "male",
    "female": "female",
    "f": "female",
    "woman": "female",
}
#: Cells that mean "not recorded" rather than a value we do not understand.
MISSING_MARKERS = frozenset({"", "nan", "na", "n/a", "none", "null", "unknown", "?", "-"})
MAX_AGE = 130.0  # anything above is a data-entry error, not a patient
_EXAMPLES = 5  # how many offending values a problem line names


@dataclass(frozen=True)
class DerivedAttribute:
    """The group labels of one attribute for every row, and what was odd about the raw cells.

    Attributes:
        name: attribute name (e.g. ``"sex"``).
        values: group label per row; ``"unknown"`` where missing or unrecognized.
        n_missing: rows whose cell was empty (or a missing marker).
        unrecognized: (raw value, count) of cells that were present but not understood.
        problems: human-readable lines for the validation report (empty when all is well).
    """

    name: str
    values: tuple[str, ...]
    n_missing: int
    unrecognized: tuple[tuple[str, int], ...] = ()
    problems: tuple[str, ...] = ()


def default_attributes(sex_column: str = "sex", age_column: str = "age_approx") -> tuple[AttributeSpec, ...]:
    """The paper's attributes: sex {male, female} and age {young < 30, middle 30-65, old > 65}.

    Args:
        sex_column: metadata column holding sex (ISIC 2019 and HAM10000: ``sex``).
        age_column: metadata column holding age (ISIC 2019: ``age_approx``; HAM10000: ``age``).
    """
    return (
        AttributeSpec(name="sex", column=sex_column, kind="sex"),
        AttributeSpec(name="age", column=age_column, kind="age", bins=(30.0, 65.0),
                      labels=("young", "middle", "old")),
    )


def _is_missing(cell: object) -> bool:
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return str(cell).strip().lower() in MISSING_MARKERS


def normalize_sex(cell: object) -> str | None:
    """``"male"``, ``"female"``, ``"unknown"`` for a missing cell, or None if not understood."""
    if _is_missing(cell):
        return UNKNOWN
    return SEX_ALIASES.get(str(cell).strip().lower())


def check_bins(bins: Sequence[float], labels: Sequence[str]) -> None:
    """Raise :class:`DataError` unless ``bins`` increase strictly and there is one more label."""
    if len(labels) != len(bins) + 1:
        raise DataError(
            f"age bins {tuple(bins)} need {len(bins) + 1} labels, got {len(labels)} ({tuple(labels)}); "
            "give one label more than edges"
        )
    if any(b2 <= b1 for b1, b2 in zip(bins, bins[1:])):
        raise DataError(f"age bin edges must increase strictly, got {tuple(bins)}")
    if UNKNOWN in labels:
        raise DataError(f"{UNKNOWN!r} is reserved for missing values; choose other age labels")


def age_group(age: float, bins: Sequence[float] = (30.0, 65.0),
              labels: Sequence[str] = ("young", "middle", "old")) -> str:
    """The age group of one numeric age (see the module docstring for the edge rule)."""
    if not bins:
        return labels[0]
    if age > bins[-1]:
        return labels[-1]
    for edge, label in zip(bins, labels):
        if age < edge:
            return label
    return labels[-2]  # age == last edge: belongs to the bin below it


def parse_age(cell: object) -> float | None:
    """The age as a float, ``nan`` for a missing cell, or None if the cell is not a valid age."""
    if _is_missing(cell):
        return math.nan
    try:
        age = float(str(cell).strip())
    except ValueError:
        return None
    if math.isnan(age):
        return math.nan
    if age < 0 or age > MAX_AGE:
        return None
    return age


def _examples(counter: Counter) -> str:
    return ", ".join(f"{v!r} x{n}" for v, n in counter.most_common(_EXAMPLES))


def derive(spec: AttributeSpec, cells: Sequence[object], strict: bool = False) -> DerivedAttribute:
    """Group labels of one attribute from the raw metadata cells of its column.

    Args:
        spec: which attribute and how to derive it (``kind`` "sex", "age" or "categorical";
            an attribute named ``sex`` of kind "categorical" is treated as "sex").
        cells: raw cell of every row (strings, numbers or None).
        strict: raise :class:`DataError` on unrecognized values instead of reporting them.

    Returns:
        The derived labels with the count of missing cells and the unrecognized values.
    """
    kind = spec.kind
    if kind == "categorical" and spec.name.lower() == "sex":
        kind = "sex"
    values: list[str] = []
    missing = 0
    bad: Counter = Counter()
    if kind == "age":
        check_bins(spec.bins, spec.labels)
        for cell in cells:
            age = parse_age(cell)
            if age is None:
                bad[str(cell).strip()] += 1
                values.append(UNKNOWN)
            elif math.isnan(age):
                missing += 1
                values.append(UNKNOWN)
            else:
                values.append(age_group(age, spec.bins, spec.labels))
        what = f"are not ages (numbers from 0 to {MAX_AGE:g})"
    elif kind == "sex":
        for cell in cells:
            sex = normalize_sex(cell)
            if sex is None:
                bad[str(cell).strip()] += 1
                values.append(UNKNOWN)
            else:
                missing += sex == UNKNOWN
                values.append(sex)
        what = "are not a sex this tool knows (male/female, M/F)"
    elif kind == "categorical":
        for cell in cells:
            if _is_missing(cell):
                missing += 1
                values.append(UNKNOWN)
            else:
                values.append(str(cell).strip())
        what = ""
    else:
        raise DataError(f"attribute {spec.name!r} has kind {kind!r}; use 'sex', 'age' or 'categorical'")
    problems = []
    if bad:
        message = (f"column {spec.column!r} (attribute {spec.name!r}): {sum(bad.values())} rows have values that "
                   f"{what}: {_examples(bad)}; they are counted as {UNKNOWN!r}")
        if strict:
            raise DataError(message + " (fix the column or allow unknown values)")
        problems.append(message)
    return DerivedAttribute(
        name=spec.name,
        values=tuple(values),
        n_missing=missing,
        unrecognized=tuple(bad.most_common()),
        problems=tuple(problems),
    )


def derive_attributes(
    columns: Mapping[str, Sequence[object]],
    specs: Iterable[AttributeSpec],
    source: str = "metadata",
    strict: bool = False,
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]:
    """Derive every attribute from a table given as column name -> cells.

    Args:
        columns: the metadata table, one sequence of cells per column, all of equal length.
        specs: the attributes wanted.
        source: file name used in error messages.
        strict: refuse unrecognized values instead of reporting them.

    Returns:
        ``(attributes, problems)``: attributes in the :class:`DatasetIndex` shape and the
        problem lines of all of them.

    Raises:
        DataError: a spec names a column the table does not have, or two specs share a name.
    """
    specs = tuple(specs)
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"attribute names must be unique; repeated: {dupes}")
    missing_cols = [s.column for s in specs if s.column not in columns]
    if missing_cols:
        raise DataError(
            f"{source} has no column(s) {missing_cols} needed for the demographic attributes; "
            f"columns present: {sorted(columns)}. Name the right column or drop the attribute"
        )
    attributes = []
    problems: list[str] = []
    for spec in specs:
        derived = derive(spec, columns[spec.column], strict=strict)
        attributes.append((spec.name, derived.values))
        problems.extend(derived.problems)
    return tuple(attributes), tuple(problems)
