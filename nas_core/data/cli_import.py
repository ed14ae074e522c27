"""The ``datasets inspect``, ``datasets import`` and ``datasets list`` commands.

Owns the column flags shared by ``inspect`` and ``import`` and how they become a
:class:`~nas_core.data.generic.ColumnMapping`:

- ``--image-col``, ``--label-col`` (or ``--one-hot-cols A,B,C``), ``--group-col``, ``--csv``
  and ``--classes`` name the generic columns;
- ``--sex-col``, ``--age-col`` and every ``--attr COL`` (or ``--attr NAME=COL``) add attributes
  *beside* the format's defaults (sex and age), replacing a default of the same name;
  ``--no-default-attrs`` keeps only the named ones;
- ``--age-bins 30,65`` (and ``--age-labels``) re-bin every age attribute.

Registered by :mod:`nas_core.data.cli` under its ``datasets`` group.
"""

from __future__ import annotations

import argparse
import sys
import time

from nas_core.cli import CliError, emit
from nas_core.data import zipsafe
from nas_core.data.generic import ColumnMapping
from nas_core.data.index import AttributeSpec
from nas_core.store import Store

FORMAT_CHOICES = ("isic2019", "ham10000", "generic", "folder")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``inspect``, ``import`` and ``list`` to the ``datasets`` sub-parsers."""
    inspect = sub.add_parser(
        "inspect", help="validate a data folder or zip and show its report (nothing is stored)",
        description="Read a data set (ISIC 2019, HAM10000, any CSV + images, or one folder per class), check "
                    "every image and print the validation report: format, counts per class and group, the "
                    "class x group table and every problem. Exit code 0 if it could be imported, 1 if not.")
    inspect.add_argument("source", metavar="PATH|ZIP", help="data folder on this machine, or a .zip")
    _column_flags(inspect)
    inspect.add_argument("--allow-corrupt", action="store_true",
                         help="judge importability as if bad images and rows without images were left out")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(func=_inspect)

    imp = sub.add_parser(
        "import", help="validate, cache and register a data set in the database",
        description="Validate a data set, decode its images once into the training-resolution cache, and "
                    "register it in the database. All or nothing: a refused or failed import stores nothing.")
    imp.add_argument("source", metavar="PATH|ZIP", help="data folder (read in place) or a .zip (extracted)")
    imp.add_argument("--db", required=True, help="the EquiNAS database file")
    imp.add_argument("--name", help="name of the data set (default: the folder or zip name)")
    _column_flags(imp)
    imp.add_argument("--allow-corrupt", action="store_true",
                     help="leave out (and list) corrupt images and rows without images instead of refusing")
    imp.add_argument("--image-size", type=int, default=64, help="training resolution of the cache (default 64)")
    imp.add_argument("--cache-dir", help="cache folder (default $EQUINAS_CACHE_DIR or data/cache)")
    imp.add_argument("--uploads-dir", help="where a zip is extracted (default: uploads/ beside the database)")
    imp.add_argument("--json", action="store_true", help="print the registered data set as JSON")
    imp.set_defaults(func=_import)

    lst = sub.add_parser("list", help="list the data sets registered in the database",
                         description="List every registered data set with its format, size and classes.")
    lst.add_argument("--db", required=True, help="the EquiNAS database file")
    lst.add_argument("--json", action="store_true", help="print as JSON")
    lst.set_defaults(func=_list)


def _column_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("format and columns (all optional: detected or guessed when left out)")
    g.add_argument("--format", choices=FORMAT_CHOICES, help="force the format instead of detecting it")
    g.add_argument("--csv", help="the metadata CSV (relative to the data folder) when there are several")
    g.add_argument("--image-col", help="column with the image file name, relative path or id")
    g.add_argument("--label-col", help="column with the class name")
    g.add_argument("--one-hot-cols", help="comma-separated one-hot label columns (instead of --label-col)")
    g.add_argument("--classes", help="comma-separated allowed class names (a label outside them is refused)")
    g.add_argument("--group-col", help="lesion or patient id column (its images stay on one side of a split)")
    g.add_argument("--sex-col", help="column with sex (male/female, M/F)")
    g.add_argument("--age-col", help="column with age in years")
    g.add_argument("--age-bins", help="age edges, e.g. 30,65 (default) -> <30, 30-65, >65")
    g.add_argument("--age-labels", help="age group names, one more than edges (default young,middle,old)")
    g.add_argument("--attr", action="append", default=None, metavar="[NAME=]COL",
                   help="a categorical attribute column (skin type, site, ...); repeat for more")
    g.add_argument("--no-default-attrs", action="store_true",
                   help="use only the attributes named by --sex-col/--age-col/--attr")
    g.add_argument("--min-group-test", type=int, default=10,
                   help="groups with fewer expected test samples are reported as too small (default 10)")
    g.add_argument("--max-pixels", type=int, help="pixel cap per image (default PIL's, about 89 million)")
    g.add_argument("--max-zip-bytes", type=int, default=zipsafe.DEFAULT_MAX_TOTAL_BYTES,
                   help="most uncompressed bytes a zip may hold, declared and inflated (zip bomb guard; default $EQUINAS_MAX_UPLOAD_BYTES or 4 GiB)")
    g.add_argument("--max-zip-files", type=int, default=zipsafe.DEFAULT_MAX_FILES,
                   help=f"most entries a zip may hold (default {zipsafe.DEFAULT_MAX_FILES})")
    g.add_argument("--workers", type=int, help="processes for checking and decoding (default all CPUs)")


def _split(text: str | None, flag: str) -> tuple[str, ...]:
    if text is None:
        return ()
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise CliError(f"{flag} needs a comma-separated list, got {text!r}")
    return items


def mapping_from_args(args: argparse.Namespace) -> ColumnMapping | None:
    """The column mapping the flags describe, or None when no column flag was given.

    Raises:
        CliError: a flag's value cannot be parsed (the message names the flag).
    """
    attrs: list[AttributeSpec] = []
    if args.sex_col:
        attrs.append(AttributeSpec("sex", args.sex_col, kind="sex"))
    if args.age_col:
        attrs.append(AttributeSpec("age", args.age_col, kind="age"))
    for item in args.attr or ():
        name, _, col = item.partition("=") if "=" in item else (item, "", item)
        if not name.strip() or not col.strip():
            raise CliError(f"--attr needs COL or NAME=COL, got {item!r}")
        attrs.append(AttributeSpec(name.strip(), col.strip()))
    bins = None
    if args.age_bins is not None:
        try:
            bins = tuple(float(b) for b in _split(args.age_bins, "--age-bins"))
        except ValueError as exc:
            raise CliError(f"--age-bins must be numbers separated by commas, e.g. 30,65; got {args.age_bins!r}") from exc
    labels = _split(args.age_labels, "--age-labels") or None
    if labels and bins is None:
        bins = (30.0, 65.0)
    one_hot = _split(args.one_hot_cols, "--one-hot-cols")
    if args.label_col and one_hot:
        raise CliError("give either --label-col or --one-hot-cols, not both")
    given = any([args.image_col, args.label_col, one_hot, args.group_col, args.csv, args.classes, attrs, bins,
                 args.no_default_attrs])
    if not given:
        return None
    return ColumnMapping(image=args.image_col or "", label=args.label_col or "", attributes=tuple(attrs),
                         group=args.group_col, csv=args.csv, classes=_split(args.classes, "--classes"),
                         one_hot=one_hot, extend_defaults=not args.no_default_attrs, age_bins=bins,
                         age_labels=labels)


def _progress(args: argparse.Namespace):
    last = [0.0, ""]

    def show(stage: str, done: int, total: int) -> None:
        # Progress goes to a terminal's stderr only, and never with --json: stdout stays clean for
        # JSON consumers, and logs of unattended runs stay free of carriage-return noise.
        now = time.perf_counter()
        if args.json or not sys.stderr.isatty():
            return
        if stage != last[1] or now - last[0] > 0.5 or done == total:
            last[0], last[1] = now, stage
            label = {"check": "checking images", "cache": "decoding into the cache"}.get(stage, stage)
            sys.stderr.write(f"\r{label}: {done}/{total}" + ("\n" if done == total else ""))

    return show


def _inspect(args: argparse.Namespace) -> int:
    from nas_core.data.importer import inspect_source

    result = inspect_source(args.source, fmt=args.format, mapping=mapping_from_args(args),
                            min_group_test=args.min_group_test, max_pixels=args.max_pixels, workers=args.workers,
                            progress=_progress(args), max_files=args.max_zip_files,
                            max_total_bytes=args.max_zip_bytes)
    report = result.report
    emit(args, report.to_dict(), report.to_text(allow_corrupt=args.allow_corrupt))
    return 0 if report.importable(args.allow_corrupt) else 1


def _open_store(db: str):
    return Store.open(db)


def _record_dict(rec) -> dict:
    return {"id": rec.id, "name": rec.name, "format": rec.format, "source": rec.source,
            "content_hash": rec.content_hash, "counts": rec.counts, "columns": rec.columns,
            "cache_path": rec.cache_path, "created_at": rec.created_at,
            "image_size": rec.config.get("image_size"), "excluded": rec.config.get("excluded", [])}


def _import(args: argparse.Namespace) -> int:
    from nas_core.data.importer import import_dataset

    mapping = mapping_from_args(args)
    store = _open_store(args.db)
    try:
        rec = import_dataset(args.source, store, name=args.name, fmt=args.format, mapping=mapping,
                             image_size=args.image_size, allow_corrupt=args.allow_corrupt, progress=_progress(args),
                             cache_dir=args.cache_dir, uploads=args.uploads_dir, min_group_test=args.min_group_test,
                             max_pixels=args.max_pixels, workers=args.workers, max_files=args.max_zip_files,
                             max_total_bytes=args.max_zip_bytes)
    finally:
        store.close()
    counts = rec.counts
    text = (f"imported {rec.name!r} (id {rec.id}, format {rec.format}): {counts['images']} images, "
            f"{len(counts['classes'])} classes"
            + (f", {counts['left_out']} left out: {', '.join(rec.config['excluded'][:5])}" if counts["left_out"] else ""))
    emit(args, _record_dict(rec), text)
    return 0


def _list(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not Path(args.db).expanduser().is_file():
        raise CliError(f"no database at {args.db}; import a data set first (datasets import PATH --db {args.db})")
    store = _open_store(args.db)
    try:
        records = store.list_datasets()
    finally:
        store.close()
    rows = [_record_dict(r) for r in records]
    if not rows:
        text = "no data sets registered; add one with: python -m nas_core datasets import PATH --db " + args.db
    else:
        lines = [f"{'id':>3}  {'name':<24} {'format':<9} {'images':>7} {'classes':>7}  source"]
        for r in rows:
            lines.append(f"{r['id']:>3}  {r['name'][:24]:<24} {r['format']:<9} {r['counts'].get('images', 0):>7} "
                         f"{len(r['counts'].get('classes', {})):>7}  {r['source']}")
        text = "\n".join(lines)
    emit(args, rows, text)
    return 0
