"""The validation report a user sees before importing a data set.

Owns :class:`ValidationReport` (frozen) and :func:`build_report`, which adds to a
reader's findings (:class:`~nas_core.data.generic.Finding`) everything that needs
the image files or the whole table:

- every image file is opened in a process pool and checked cheaply: the header
  is parsed (unknown format -> ``not_image``), the pixel count is compared with
  the cap *before* decoding (PIL's ``MAX_IMAGE_PIXELS`` by default; PIL's own
  ``DecompressionBombWarning``/``DecompressionBombError`` are caught too), JPEGs
  are decoded in draft mode at 1/8 scale (finds truncated files at a fraction of
  a full decode) and other formats go through ``Image.verify()``. Bad files are
  named (``corrupt``/``not_image``/``too_large``/``unreadable``) and need the
  user's consent to be left out;
- each file's bytes are hashed while they are in memory anyway, giving the data
  set's content hash (rows, labels, attributes, groups and image bytes) that
  recognises the same data imported twice;
- class counts, group counts, the class x group table, groups too small to
  measure (expected test samples below ``min_group_test``), and how many lesion
  or patient groups with several images the split will keep together.

Severities: ``fatal`` findings refuse the import, ``consent`` findings refuse it
unless the user allows leaving those rows out, the rest is information.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from nas_core.data.generic import Finding, Loaded, show, sort_findings
from nas_core.data.index import UNKNOWN, DatasetIndex
from nas_core.data.pool import process_pool

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # PIL's decompression-bomb threshold
CHUNK = 32  # files per pool task: amortizes pickling, keeps progress lively
IN_PROCESS_BELOW = 200  # fewer files than this are checked here: a pool costs more to start
_DRAFT = (64, 64)  # JPEG draft target: libjpeg decodes at 1/8 scale, still reading every byte

BAD_KINDS = {
    "not_image": "not an image",
    "corrupt": "corrupt or truncated",
    "too_large": "over the pixel cap (decompression bomb guard)",
    "unreadable": "unreadable file",
}


@dataclass(frozen=True)
class BadImage:
    """An image file that cannot be used, and why."""

    id: str
    path: str
    kind: str  # one of BAD_KINDS
    reason: str


@dataclass(frozen=True)
class GroupCount:
    """Images of one group of one attribute, and what a 10% test split would hold."""

    attribute: str
    group: str
    n: int
    class_counts: tuple[int, ...]  # per class, in class order
    expected_test: float


@dataclass(frozen=True)
class ValidationReport:
    """Everything found about a data set before import.

    Attributes:
        root: the data folder.
        format: the format read.
        n_rows: rows of the metadata.
        n_images: rows whose image file exists (the index).
        class_names: classes in index order.
        class_counts: images per class (rows with an image).
        groups: per attribute and group: count, per-class counts, expected test samples.
        bad_images: image files that cannot be used.
        findings: every finding, most serious first.
        n_multi_groups: lesion/patient groups with more than one image (kept on one side of a split).
        n_images_in_multi_groups: images in those groups.
        content_hash: hash of rows, labels, attributes, groups and image bytes (empty when images
            were not checked).
        digests: hash of each image file's bytes, in index order (empty when not checked).
        min_group_test: the smallest number of test samples a group needs to be measured.
        test_fraction: the share of the test split used for that estimate.
    """

    root: str
    format: str
    n_rows: int
    n_images: int
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    groups: tuple[GroupCount, ...]
    bad_images: tuple[BadImage, ...]
    findings: tuple[Finding, ...]
    n_multi_groups: int = 0
    n_images_in_multi_groups: int = 0
    content_hash: str = ""
    digests: tuple[str, ...] = ()
    min_group_test: int = 10
    test_fraction: float = 0.1

    @property
    def fatal(self) -> tuple[Finding, ...]:
        """Findings that refuse the import."""
        return tuple(f for f in self.findings if f.severity == "fatal")

    @property
    def consent(self) -> tuple[Finding, ...]:
        """Findings that refuse the import unless the user allows leaving the rows out."""
        return tuple(f for f in self.findings if f.severity == "consent")

    @property
    def n_usable(self) -> int:
        """Images that are readable (rows with an image file minus bad images)."""
        return self.n_images - len(self.bad_images)

    def importable(self, allow_corrupt: bool = False) -> bool:
        """True when nothing fatal was found and consent findings are allowed or absent."""
        return not self.fatal and (allow_corrupt or not self.consent) and self.n_usable > 0

    def verdict(self, allow_corrupt: bool = False) -> str:
        """One line: can this be imported, and if not, why."""
        if self.fatal:
            return f"refused: {len(self.fatal)} problem(s) must be fixed first"
        if self.n_usable == 0:
            return "refused: no usable image"
        if self.consent and not allow_corrupt:
            n = sum(len(f.items) for f in self.consent)
            return (f"refused unless you allow leaving {n} bad or missing image(s) out "
                    "(--allow-corrupt / the checkbox)")
        left_out = sum(len(f.items) for f in self.consent)
        return "ready to import" + (f" ({left_out} rows left out)" if left_out else "")

    def to_dict(self) -> dict:
        """JSON-able summary (the CLI's ``--json``; digests left out)."""
        return {
            "root": self.root, "format": self.format, "n_rows": self.n_rows, "n_images": self.n_images,
            "n_usable": self.n_usable,
            "classes": dict(zip(self.class_names, self.class_counts)),
            "groups": [{"attribute": g.attribute, "group": g.group, "n": g.n, "expected_test": g.expected_test,
                        "classes": dict(zip(self.class_names, g.class_counts))} for g in self.groups],
            "bad_images": [{"id": b.id, "path": b.path, "kind": b.kind, "reason": b.reason} for b in self.bad_images],
            "problems": [{"code": f.code, "severity": f.severity, "message": f.message, "items": list(f.items)}
                         for f in self.findings],
            "lesion_groups_kept_together": self.n_multi_groups,
            "images_in_lesion_groups": self.n_images_in_multi_groups,
            "content_hash": self.content_hash, "min_group_test": self.min_group_test,
            "importable": self.importable(), "verdict": self.verdict(),
        }

    def to_text(self, allow_corrupt: bool = False) -> str:
        """The report as a plain-text page (the CLI's default output)."""
        lines = [f"Data set: {self.root}", f"Format:   {self.format}",
                 f"Rows:     {self.n_rows} in the metadata, {self.n_images} with an image file, "
                 f"{self.n_usable} readable", "", "Classes:"]
        width = max((len(c) for c in self.class_names), default=5)
        for name, n in zip(self.class_names, self.class_counts):
            lines.append(f"  {name:<{width}}  {n:>7}")
        attrs: dict[str, list[GroupCount]] = {}
        for g in self.groups:
            attrs.setdefault(g.attribute, []).append(g)
        for attr, gs in attrs.items():
            lines += ["", f"Groups of {attr} (class x group):"]
            gw = max(len(g.group) for g in gs)
            cw = [max(len(c), 5) for c in self.class_names]
            lines.append(f"  {'':<{gw}}  {'total':>7}  ~test  " + "  ".join(
                f"{c:>{w}}" for c, w in zip(self.class_names, cw)))
            for g in gs:
                lines.append(f"  {g.group:<{gw}}  {g.n:>7}  {g.expected_test:>5.1f}  " + "  ".join(
                    f"{n:>{w}}" for n, w in zip(g.class_counts, cw)))
        if self.n_multi_groups:
            lines += ["", f"Lesion/patient groups: {self.n_multi_groups} groups with several images "
                          f"({self.n_images_in_multi_groups} images) are kept on one side of every split"]
        if self.findings:
            lines += ["", "Problems:"]
            tag = {"fatal": "ERROR  ", "consent": "CONSENT", "warning": "WARNING", "info": "INFO   "}
            lines += [f"  {tag[f.severity]} {f.message}" for f in self.findings]
        lines += ["", f"Verdict: {self.verdict(allow_corrupt)}"]
        if self.content_hash:
            lines.append(f"Content hash: {self.content_hash[:16]}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- image checks

def _init_worker(max_pixels: int) -> None:
    # Each pool process gets PIL's own guard at the user's cap, so Image.open itself refuses bombs there.
    Image.MAX_IMAGE_PIXELS = max_pixels


def check_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, str, str]:
    """Check one image file cheaply.

    Returns:
        ``(kind, reason, digest)``: kind is ``""`` for a good image, else one of :data:`BAD_KINDS`;
        digest is the BLAKE2b of the file's bytes (empty when unreadable).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return "unreadable", f"cannot read the file ({exc.strerror or exc})", ""
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if not data:
        return "not_image", "empty file", digest
    try:
        with warnings.catch_warnings():
            # PIL warns above MAX_IMAGE_PIXELS; under a cap at or below it that warning is a refusal.
            action = "error" if max_pixels <= (Image.MAX_IMAGE_PIXELS or max_pixels) else "ignore"
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    return "too_large", f"{w}x{h} = {w * h} pixels, over the cap of {max_pixels}", digest
                if im.format == "JPEG":
                    im.draft("RGB", _DRAFT)
                    im.load()
                else:
                    im.verify()
    except UnidentifiedImageError:
        return "not_image", "not an image file PIL can read", digest
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return "too_large", f"over the pixel cap ({exc})", digest
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports damaged data as OSError ("image file is truncated"), SyntaxError (bad PNG
        # chunks) or ValueError; all mean the same thing to the user.
        return "corrupt", str(exc) or type(exc).__name__, digest
    return "", "", digest


def _check_chunk(paths: Sequence[str], max_pixels: int) -> list[tuple[str, str, str]]:
    return [check_image(p, max_pixels) for p in paths]


def check_images(paths: Sequence[str], max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[tuple[str, str, str]]:
    """:func:`check_image` for every path, in order, in a process pool for more than a few files.

    Args:
        paths: absolute image paths.
        max_pixels: pixel cap.
        workers: processes; None = every CPU (in this process below :data:`IN_PROCESS_BELOW` files).
        progress: called with (files checked, total).
    """
    n = len(paths)
    if workers is None:
        workers = 1 if n < IN_PROCESS_BELOW else (os.cpu_count() or 1)
    out: list[tuple[str, str, str]] = []
    starts = range(0, n, CHUNK)
    if workers <= 1:
        for s in starts:
            out += _check_chunk(paths[s:s + CHUNK], max_pixels)
            if progress:
                progress(len(out), n)
        return out
    with process_pool(workers, initializer=_init_worker, initargs=(max_pixels,)) as pool:
        # map keeps order and streams: only chunks of paths and small tuples cross processes.
        for part in pool.map(_check_chunk, [paths[s:s + CHUNK] for s in starts],
                             [max_pixels] * len(starts)):
            out += part
            if progress:
                progress(len(out), n)
    return out


def content_hash(index: DatasetIndex, digests: Sequence[str], rows: Sequence[int] | None = None) -> str:
    """SHA-256 of the data set's meaning: classes, and per row id, label, attributes, group, image bytes.

    Rows are sorted by id so the same data listed in another order hashes the same.
    """
    rows = range(len(index)) if rows is None else rows
    h = hashlib.sha256()
    h.update(("classes:" + "|".join(index.class_names) + "\n").encode())
    h.update(("attributes:" + "|".join(index.attribute_names) + "\n").encode())
    lines = []
    for i in rows:
        attrs = "|".join(values[i] for _, values in index.attributes)
        group = index.group_ids[i] if index.group_ids is not None else ""
        lines.append(f"{index.ids[i]}\t{index.labels[i]}\t{attrs}\t{group}\t{digests[i]}")
    for line in sorted(lines):
        h.update(line.encode() + b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- the report

def build_report(
    data: Loaded | DatasetIndex,
    *,
    min_group_test: int = 10,
    test_fraction: float = 0.1,
    max_pixels: int | None = None,
    check: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Validate a data set read by :mod:`nas_core.data.formats`.

    Args:
        data: a reader's result (with its findings) or a bare index (its problems become warnings).
        min_group_test: a group with fewer expected test samples than this is reported as too small.
        test_fraction: the test share of the split (DESIGN.md: 10%).
        max_pixels: pixel cap per image; None = PIL's ``MAX_IMAGE_PIXELS``.
        check: open and hash every image (False: counts only, e.g. for a quick preview).
        workers: processes for the image check (None = every CPU for large sets).
        progress: called with (images checked, total).

    Returns:
        The report; nothing is written anywhere.
    """
    if isinstance(data, Loaded):
        index, findings, n_rows = data.index, list(data.findings), data.n_rows
    else:
        index, n_rows = data, len(data)
        findings = [Finding("reader", "warning", p) for p in data.problems]
    max_pixels = int(max_pixels or DEFAULT_MAX_PIXELS)
    n_classes = len(index.class_names)

    bad: list[BadImage] = []
    bad_rows: set[int] = set()
    digests: tuple[str, ...] = ()
    if check and len(index):
        results = check_images([str(Path(index.root) / p) for p in index.paths], max_pixels, workers, progress)
        digests = tuple(d for _, _, d in results)
        for i, (kind, reason, _) in enumerate(results):
            if kind:
                bad_rows.add(i)
                bad.append(BadImage(id=index.ids[i], path=index.paths[i], kind=kind, reason=reason))
        by_kind: dict[str, list[BadImage]] = {}
        for b in bad:
            by_kind.setdefault(b.kind, []).append(b)
        for kind, items in by_kind.items():
            names = [b.path for b in items]
            findings.append(Finding(f"{kind}_images", "consent",
                                    f"{len(items)} image file(s) {BAD_KINDS[kind]}: "
                                    f"{show([f'{b.path} ({b.reason})' for b in items], 3)}; replace them, or "
                                    "allow leaving them out", tuple(names)))

    good = [i for i in range(len(index)) if i not in bad_rows]
    class_counts = [0] * n_classes
    for i in good:
        if 0 <= index.labels[i] < n_classes:
            class_counts[index.labels[i]] += 1
    empty_classes = [c for c, n in zip(index.class_names, class_counts) if n == 0]
    if empty_classes and len(good):
        findings.append(Finding("empty_classes", "warning", f"classes without any usable image: {empty_classes}; "
                                "they cannot be learned or measured", tuple(empty_classes)))
    findings += _class_size_findings(index.class_names, class_counts, len(good))

    groups: list[GroupCount] = []
    small: list[str] = []
    for attr, values in index.attributes:
        per_group: dict[str, list[int]] = {}
        for i in good:
            row = per_group.setdefault(values[i], [0] * n_classes)
            if 0 <= index.labels[i] < n_classes:
                row[index.labels[i]] += 1
        order = sorted(per_group, key=lambda g: (g == UNKNOWN, g))
        for g in order:
            n = sum(per_group[g])
            expected = round(n * test_fraction, 1)
            groups.append(GroupCount(attribute=attr, group=g, n=n, class_counts=tuple(per_group[g]),
                                     expected_test=expected))
            if g != UNKNOWN and expected < min_group_test:
                small.append(f"{attr}={g} ({n} images, ~{expected:g} in the test split)")
        if per_group.get(UNKNOWN):
            n_unknown = sum(per_group[UNKNOWN])
            findings.append(Finding("unknown_group", "info", f"{n_unknown} images have no {attr}: counted in overall "
                                    "accuracy, left out of its group metrics"))
    if small:
        findings.append(Finding("small_groups", "warning",
                                f"groups too small to measure (fewer than {min_group_test} expected test samples): "
                                f"{show(small, 8)}; their fairness numbers will be noisy", tuple(small)))

    n_multi = n_in_multi = 0
    if index.group_ids is not None:
        sizes = Counter(index.group_ids[i] for i in good)
        n_multi = sum(1 for s in sizes.values() if s > 1)
        n_in_multi = sum(s for s in sizes.values() if s > 1)
        if n_multi:
            findings.append(Finding("lesion_groups", "info",
                                    f"{n_multi} lesion/patient groups hold several images ({n_in_multi} images); "
                                    "each group stays on one side of the train/validation/test split"))

    chash = content_hash(index, digests, good) if digests else ""
    return ValidationReport(
        root=index.root, format=index.format, n_rows=n_rows, n_images=len(index),
        class_names=index.class_names, class_counts=tuple(class_counts), groups=tuple(groups),
        bad_images=tuple(bad), findings=sort_findings(_dedupe(findings)), n_multi_groups=n_multi,
        n_images_in_multi_groups=n_in_multi, content_hash=chash, digests=digests,
        min_group_test=min_group_test, test_fraction=test_fraction,
    )


#: A class needs this many images to have some in training and in the validation and test splits.
MIN_CLASS_IMAGES = 5


def _class_size_findings(names: Sequence[str], counts: Sequence[int], n_good: int) -> list[Finding]:
    """Refuse what no search can learn from (one class; no two classes with 2+ images); warn on tiny classes."""
    if n_good == 0:
        return []
    present = [(c, n) for c, n in zip(names, counts) if n > 0]
    if len(present) < 2:
        only = present[0][0] if present else "none"
        return [Finding("single_class", "fatal",
                        f"every usable image has the same class ({only}); a classifier needs at least two classes. "
                        "Check the label column (mapping) or add images of the other classes", (str(only),))]
    if sum(n >= 2 for _, n in present) < 2:
        return [Finding("classes_too_small", "fatal",
                        f"{len(present)} classes but fewer than two of them have 2 or more images; a class must have "
                        "images both to train on and to test on. Merge rare classes or add images",
                        tuple(c for c, _ in present))]
    small = [f"{c} ({n})" for c, n in present if n < MIN_CLASS_IMAGES]
    if small:
        return [Finding("small_classes", "warning",
                        f"{len(small)} class(es) have fewer than {MIN_CLASS_IMAGES} images: {show(small, 5)}; they may "
                        "be missing from the validation or test split and their recall cannot be trusted. Merge or "
                        "drop them, or add images", tuple(small))]
    return []


def _dedupe(findings: Sequence[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        if (f.code, f.message) not in seen:
            seen.add((f.code, f.message))
            out.append(f)
    return out
