"""The architecture search space: the Template, its Choices, and the spec record.

This module owns what a CNN *is* to the rest of the engine: an immutable
:class:`ArchSpec` (stem, blocks, head) that is data, never code; the
:class:`Choices` that bound every field and the number of blocks; validation
that names the offending field and the allowed values; a canonical key so the
same network is never evaluated twice; an integer encoding for LINAS with
``decode(encode(s)) == s``; random sampling and mutation inside the Choices.

Decisions (DESIGN.md was silent):
- ``expand`` only means something for ``mbconv`` blocks; for every other block
  type it is an inactive gene and is normalized to 1, so two specs that differ
  only there share a key.
- Blocks beyond the depth gene are inactive in the integer encoding.
- Whether a spec fits the run's parameter/MAC caps needs a built model, so it is
  checked by :func:`nas_core.models.check_budget`, not here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from nas_core.errors import UserError

BLOCK_TYPES = ("conv", "residual", "mbconv", "dwsep")

#: Block fields in a fixed order; this order defines the integer encoding.
BLOCK_FIELDS = ("type", "out_channels", "kernel", "stride", "expand", "norm", "act", "se", "dropout", "pool")
STEM_FIELDS = ("out_channels", "kernel", "stride")
HEAD_FIELDS = ("hidden", "dropout")


class SpecError(UserError, ValueError):
    """A spec (or a Choices file) is invalid.

    Attributes:
        errors: one human-readable line per problem, each naming the field path,
            the offending value and what is allowed.
    """

    def __init__(self, errors: Sequence[str]):
        self.errors = tuple(errors)
        super().__init__("; ".join(self.errors) if self.errors else "invalid spec")


@dataclass(frozen=True)
class StemSpec:
    """The first convolution, before any block."""

    out_channels: int = 32  # channels after the stem
    kernel: int = 3  # square kernel size
    stride: int = 1  # 1 keeps the input resolution; 2 halves it


@dataclass(frozen=True)
class BlockSpec:
    """One block of the body. See DESIGN.md for the meaning of each field."""

    type: str = "conv"  # conv | residual | mbconv | dwsep
    out_channels: int = 64  # channels after the block
    kernel: int = 3  # square kernel of the spatial convolution
    stride: int = 1  # stride of the spatial convolution
    expand: int = 1  # mbconv expansion ratio; inactive (1) for other types
    norm: str = "batch"  # batch | group | layer | instance | none
    act: str = "relu"  # relu | relu6 | silu | gelu | hardswish
    se: bool = False  # squeeze-and-excitation after the spatial convolution
    dropout: float = 0.0  # dropout (2-D, channel-wise) at the end of the block
    pool: str = "none"  # none | max | avg: a 2x2 pool after the block


@dataclass(frozen=True)
class HeadSpec:
    """Global average pooling, an optional hidden layer, then the classifier."""

    hidden: int = 0  # width of the hidden fully connected layer; 0 = none
    dropout: float = 0.0  # dropout before the classifier


@dataclass(frozen=True)
class ArchSpec:
    """An immutable, normalized architecture spec.

    Build one with :meth:`from_dict` (validates shape and types) and check it
    against a run's :class:`Choices` with :func:`validate`.
    """

    stem: StemSpec = field(default_factory=StemSpec)
    blocks: tuple[BlockSpec, ...] = ()
    head: HeadSpec = field(default_factory=HeadSpec)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict in the Template's shape."""
        return {
            "stem": dataclasses.asdict(self.stem),
            "blocks": [dataclasses.asdict(b) for b in self.blocks],
            "head": dataclasses.asdict(self.head),
        }

    def to_json(self, indent: int | None = None) -> str:
        """JSON text of :meth:`to_dict` with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @property
    def key(self) -> str:
        """Canonical key: the same network always has the same key."""
        return canonical_key(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        """Parse a Template-shaped mapping into a normalized spec.

        Missing fields take the defaults above; unknown fields and wrong types
        are errors (a typo must not silently become a default).

        Raises:
            SpecError: naming every offending field.
        """
        errors: list[str] = []
        if not isinstance(data, Mapping):
            raise SpecError([f"spec must be a JSON object, got {type(data).__name__}"])
        unknown = set(data) - {"stem", "blocks", "head"}
        if unknown:
            errors.append(f"unknown top-level field(s) {sorted(unknown)}; allowed: stem, blocks, head")
        stem = _parse_part(data.get("stem", {}), StemSpec, "stem", errors)
        head = _parse_part(data.get("head", {}), HeadSpec, "head", errors)
        raw_blocks = data.get("blocks", [])
        blocks: list[BlockSpec] = []
        if not isinstance(raw_blocks, list | tuple):
            errors.append(f"blocks must be a list, got {type(raw_blocks).__name__}")
        else:
            for i, b in enumerate(raw_blocks):
                parsed = _parse_part(b, BlockSpec, f"blocks[{i}]", errors)
                if parsed is not None:
                    blocks.append(parsed)
        if errors:
            raise SpecError(errors)
        return normalize(cls(stem=stem, blocks=tuple(blocks), head=head))

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parse JSON text; see :meth:`from_dict`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError([f"spec is not valid JSON: {exc}"]) from exc
        return cls.from_dict(data)


def _parse_part(raw: Any, kind: type, path: str, errors: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        errors.append(f"{path} must be an object, got {type(raw).__name__}")
        return None
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(raw) - set(fields)
    if unknown:
        errors.append(f"{path}: unknown field(s) {sorted(unknown)}; allowed: {', '.join(fields)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        value = raw[name]
        default = f.default
        ok = True
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok and isinstance(value, float) and value.is_integer():
                value, ok = int(value), True
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, str):
            ok = isinstance(value, str)
        if not ok:
            errors.append(f"{path}.{name}: expected {type(default).__name__}, got {value!r}")
            continue
        values[name] = value
    return kind(**values)


def normalize(spec: ArchSpec) -> ArchSpec:
    """Reset inactive genes so equal networks compare and hash equal."""
    blocks = tuple(
        b if b.type == "mbconv" or b.expand == 1 else dataclasses.replace(b, expand=1) for b in spec.blocks
    )
    # Round floats so 0.1 and 0.1000000001 are one network.
    blocks = tuple(dataclasses.replace(b, dropout=round(float(b.dropout), 4)) for b in blocks)
    head = dataclasses.replace(spec.head, dropout=round(float(spec.head.dropout), 4))
    return ArchSpec(stem=spec.stem, blocks=blocks, head=head)


def canonical_key(spec: ArchSpec) -> str:
    """A 16-hex-digit hash of the normalized spec."""
    text = json.dumps(normalize(spec).to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Choices:
    """Allowed values of every field of the Template, and the block-count range.

    Every tuple lists the allowed values in order (the integer encoding uses
    the index into it). Caps are enforced on the built model.
    """

    min_blocks: int = 2  # fewest blocks the body may have
    max_blocks: int = 8  # most blocks; also the encoding's block slots
    stem_out_channels: tuple[int, ...] = (8, 16, 24, 32, 48, 64)
    stem_kernel: tuple[int, ...] = (3, 5, 7)
    stem_stride: tuple[int, ...] = (1, 2)
    type: tuple[str, ...] = BLOCK_TYPES
    out_channels: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 160, 192, 256)
    kernel: tuple[int, ...] = (3, 5, 7)
    stride: tuple[int, ...] = (1, 2)
    expand: tuple[int, ...] = (1, 2, 3, 4, 6)
    norm: tuple[str, ...] = ("batch", "group", "layer", "instance", "none")
    act: tuple[str, ...] = ("relu", "relu6", "silu", "gelu", "hardswish")
    se: tuple[bool, ...] = (False, True)
    dropout: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    pool: tuple[str, ...] = ("none", "max", "avg")
    head_hidden: tuple[int, ...] = (0, 64, 128, 256, 512, 1024)
    head_dropout: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    max_params: int | None = 5_000_000  # a built model over this is invalid; None = no cap
    max_macs: int | None = 500_000_000  # MACs at the run's input size; None = no cap

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choices:
        """Parse a Choices mapping; missing fields keep the defaults.

        Raises:
            SpecError: unknown fields, empty or wrongly typed value lists, a bad range.
        """
        if not isinstance(data, Mapping):
            raise SpecError([f"choices must be a JSON object, got {type(data).__name__}"])
        errors: list[str] = []
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            errors.append(f"choices: unknown field(s) {sorted(unknown)}; allowed: {', '.join(fields)}")
        values: dict[str, Any] = {}
        defaults = cls()
        for name in fields:
            if name not in data:
                continue
            value = data[name]
            default = getattr(defaults, name)
            if isinstance(default, tuple):
                if not isinstance(value, list | tuple) or not value:
                    errors.append(f"choices.{name}: must be a non-empty list, got {value!r}")
                    continue
                kind = type(default[0])
                bad = [v for v in value if not _is_kind(v, kind)]
                if bad:
                    errors.append(f"choices.{name}: values must be {kind.__name__}, got {bad}")
                    continue
                if name == "type" and set(value) - set(BLOCK_TYPES):
                    errors.append(f"choices.type: unknown block type(s) {sorted(set(value) - set(BLOCK_TYPES))}")
                    continue
                # Values the model builder cannot build would otherwise fail later, mid-search.
                out_of_range = [v for v in value if not _value_ok(name, v, default)]
                if out_of_range:
                    errors.append(f"choices.{name}: {out_of_range} not allowed; {_VALUE_RULES.get(name, '')}".rstrip())
                    continue
                values[name] = tuple(kind(v) for v in value)
                if name in ("dropout", "head_dropout"):
                    # Specs round dropout to 4 decimals (normalize), so the Choices must too.
                    values[name] = tuple(round(v, 4) for v in values[name])
            elif name in ("max_params", "max_macs"):
                if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                    errors.append(f"choices.{name}: must be a positive integer or null, got {value!r}")
                    continue
                values[name] = value
            else:
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    errors.append(f"choices.{name}: must be a positive integer, got {value!r}")
                    continue
                values[name] = value
        choices = cls(**values) if not errors else None
        if choices is not None and choices.min_blocks > choices.max_blocks:
            errors.append(
                f"choices: min_blocks ({choices.min_blocks}) is greater than max_blocks ({choices.max_blocks})"
            )
        if errors:
            raise SpecError(errors)
        assert choices is not None
        return choices

    @classmethod
    def default(cls) -> Choices:
        """The Choices shipped with the package (``nas_core/default_choices.json``)."""
        text = resources.files("nas_core").joinpath("default_choices.json").read_text()
        return cls.from_dict(json.loads(text))

    def allowed(self, part: str, name: str) -> tuple[Any, ...]:
        """Allowed values of ``part.name`` (part is stem, block or head)."""
        if part == "stem":
            return getattr(self, f"stem_{name}")
        if part == "head":
            return getattr(self, f"head_{name}")
        return getattr(self, name)

    @property
    def n_genes(self) -> int:
        """Length of the integer encoding."""
        return 1 + len(STEM_FIELDS) + self.max_blocks * len(BLOCK_FIELDS) + len(HEAD_FIELDS)

    def gene_bounds(self) -> list[tuple[int, int]]:
        """Inclusive (low, high) of every integer gene, in encoding order."""
        bounds = [(0, self.max_blocks - self.min_blocks)]
        bounds += [(0, len(self.allowed("stem", f)) - 1) for f in STEM_FIELDS]
        for _ in range(self.max_blocks):
            bounds += [(0, len(self.allowed("block", f)) - 1) for f in BLOCK_FIELDS]
        bounds += [(0, len(self.allowed("head", f)) - 1) for f in HEAD_FIELDS]
        return bounds


_VALUE_RULES = {
    "stem_out_channels": "channels must be at least 1",
    "out_channels": "channels must be at least 1",
    "stem_kernel": "kernels must be odd and at least 1 (same padding)",
    "kernel": "kernels must be odd and at least 1 (same padding)",
    "stem_stride": "strides must be at least 1",
    "stride": "strides must be at least 1",
    "expand": "expansion ratios must be at least 1",
    "head_hidden": "hidden widths must be 0 (no hidden layer) or more",
    "dropout": "dropout rates must be in [0, 1)",
    "head_dropout": "dropout rates must be in [0, 1)",
    "norm": "allowed: batch, group, layer, instance, none",
    "act": "allowed: relu, relu6, silu, gelu, hardswish",
    "pool": "allowed: none, max, avg",
}


def _value_ok(name: str, value: Any, default: tuple[Any, ...]) -> bool:
    """Whether one value of the Choices list ``name`` can be built (see ``_VALUE_RULES``)."""
    if name in ("norm", "act", "pool"):
        return value in default
    if name in ("dropout", "head_dropout"):
        return 0 <= value < 1
    if name == "head_hidden":
        return value >= 0
    if name in ("stem_kernel", "kernel"):
        return value >= 1 and value % 2 == 1
    if name in ("stem_out_channels", "out_channels", "stem_stride", "stride", "expand"):
        return value >= 1
    return True


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def validate(spec: ArchSpec, choices: Choices, input_size: int | None = None) -> list[str]:
    """Every way ``spec`` breaks ``choices``; an empty list means valid.

    Args:
        spec: the spec to check.
        choices: the run's Choices.
        input_size: the square training resolution; when given, the spec must
            not shrink the feature map below 1x1.

    Returns:
        One message per problem, naming the field, the value and the allowed values.
    """
    errors: list[str] = []

    def check(path: str, part: str, name: str, value: Any) -> None:
        allowed = choices.allowed(part, name)
        if value not in allowed or (isinstance(value, bool) != isinstance(allowed[0], bool)):
            errors.append(f"{path}.{name} = {value!r} is not allowed; allowed: {list(allowed)}")

    for name in STEM_FIELDS:
        check("stem", "stem", name, getattr(spec.stem, name))
    n = len(spec.blocks)
    if not choices.min_blocks <= n <= choices.max_blocks:
        errors.append(f"blocks: {n} block(s); allowed: {choices.min_blocks} to {choices.max_blocks}")
    for i, block in enumerate(spec.blocks):
        for name in BLOCK_FIELDS:
            if name == "expand" and block.type != "mbconv":
                continue
            check(f"blocks[{i}]", "block", name, getattr(block, name))
    for name in HEAD_FIELDS:
        check("head", "head", name, getattr(spec.head, name))
    if input_size is not None:
        size = -(-input_size // spec.stem.stride)
        for i, block in enumerate(spec.blocks):
            if size <= 1 and (block.stride > 1 or block.pool != "none"):
                errors.append(
                    f"blocks[{i}]: the feature map is already 1x1 at {input_size}px input; "
                    "use stride 1 and pool 'none' here, or downsample less earlier"
                )
                break
            size = -(-size // block.stride)
            if block.pool != "none":
                size = -(-size // 2)
    return errors


def check_valid(spec: ArchSpec, choices: Choices, input_size: int | None = None) -> ArchSpec:
    """Return ``spec`` if valid.

    Raises:
        SpecError: with every problem :func:`validate` found.
    """
    errors = validate(spec, choices, input_size)
    if errors:
        raise SpecError(errors)
    return spec


def encode(spec: ArchSpec, choices: Choices) -> list[int]:
    """Integer genes: depth, stem, ``max_blocks`` block slots, head.

    Inactive genes (slots past the depth, ``expand`` of non-mbconv blocks) are 0.

    Raises:
        SpecError: when the spec is not valid under ``choices``.
    """
    check_valid(spec, choices)
    genes = [len(spec.blocks) - choices.min_blocks]
    genes += [choices.allowed("stem", f).index(getattr(spec.stem, f)) for f in STEM_FIELDS]
    for i in range(choices.max_blocks):
        if i < len(spec.blocks):
            b = spec.blocks[i]
            for f in BLOCK_FIELDS:
                if f == "expand" and b.type != "mbconv":
                    genes.append(0)
                else:
                    genes.append(_index(choices.allowed("block", f), getattr(b, f)))
        else:
            genes += [0] * len(BLOCK_FIELDS)
    genes += [_index(choices.allowed("head", f), getattr(spec.head, f)) for f in HEAD_FIELDS]
    return genes


def _index(allowed: tuple[Any, ...], value: Any) -> int:
    for i, v in enumerate(allowed):
        if v == value and isinstance(v, bool) == isinstance(value, bool):
            return i
    raise ValueError(f"{value!r} not in {allowed}")


def decode(genes: Sequence[int], choices: Choices) -> ArchSpec:
    """Inverse of :func:`encode`; genes out of bounds are clipped into range."""
    genes = [int(g) for g in genes]
    if len(genes) != choices.n_genes:
        raise SpecError([f"encoding has {len(genes)} genes; expected {choices.n_genes}"])
    bounds = choices.gene_bounds()
    genes = [min(max(g, lo), hi) for g, (lo, hi) in zip(genes, bounds)]
    depth = choices.min_blocks + genes[0]
    pos = 1
    stem = StemSpec(**{f: choices.allowed("stem", f)[genes[pos + j]] for j, f in enumerate(STEM_FIELDS)})
    pos += len(STEM_FIELDS)
    blocks = []
    for i in range(choices.max_blocks):
        vals = {f: choices.allowed("block", f)[genes[pos + j]] for j, f in enumerate(BLOCK_FIELDS)}
        pos += len(BLOCK_FIELDS)
        if i < depth:
            blocks.append(BlockSpec(**vals))
    head = HeadSpec(**{f: choices.allowed("head", f)[genes[pos + j]] for j, f in enumerate(HEAD_FIELDS)})
    return normalize(ArchSpec(stem=stem, blocks=tuple(blocks), head=head))


def sample(choices: Choices, rng: random.Random) -> ArchSpec:
    """A uniformly random spec inside ``choices`` (depth uniform, then every field)."""
    genes = [rng.randint(lo, hi) for lo, hi in choices.gene_bounds()]
    return decode(genes, choices)


def mutate(spec: ArchSpec, choices: Choices, rng: random.Random, n_edits: int = 1) -> ArchSpec:
    """Apply ``n_edits`` random edits inside ``choices``; the result differs from ``spec``.

    An edit changes one active field, inserts a block (copying a neighbour) or
    removes one, within the block-count range.
    """
    for _ in range(100):
        out = spec
        for _ in range(n_edits):
            out = _one_edit(out, choices, rng)
        if out.key != spec.key:
            return out
    return out


def _one_edit(spec: ArchSpec, choices: Choices, rng: random.Random) -> ArchSpec:
    blocks = list(spec.blocks)
    roll = rng.random()
    if roll < 0.15 and len(blocks) < choices.max_blocks:
        i = rng.randint(0, len(blocks))
        template = blocks[min(i, len(blocks) - 1)] if blocks else BlockSpec()
        blocks.insert(i, dataclasses.replace(template, stride=choices.stride[0], pool=choices.pool[0]))
        blocks[i] = _fit_block(blocks[i], choices)
        return normalize(dataclasses.replace(spec, blocks=tuple(blocks)))
    if roll < 0.3 and len(blocks) > choices.min_blocks:
        del blocks[rng.randrange(len(blocks))]
        return normalize(dataclasses.replace(spec, blocks=tuple(blocks)))
    part = rng.choice(["stem"] * 1 + ["block"] * 6 + ["head"] * 1) if blocks else "stem"
    if part == "stem":
        name = rng.choice(STEM_FIELDS)
        stem = dataclasses.replace(spec.stem, **{name: rng.choice(choices.allowed("stem", name))})
        return normalize(dataclasses.replace(spec, stem=stem))
    if part == "head":
        name = rng.choice(HEAD_FIELDS)
        head = dataclasses.replace(spec.head, **{name: rng.choice(choices.allowed("head", name))})
        return normalize(dataclasses.replace(spec, head=head))
    i = rng.randrange(len(blocks))
    names = [f for f in BLOCK_FIELDS if f != "expand" or blocks[i].type == "mbconv"]
    name = rng.choice(names)
    blocks[i] = dataclasses.replace(blocks[i], **{name: rng.choice(choices.allowed("block", name))})
    if name == "type" and blocks[i].type == "mbconv":
        blocks[i] = dataclasses.replace(blocks[i], expand=rng.choice(choices.expand))
    return normalize(dataclasses.replace(spec, blocks=tuple(blocks)))


def _fit_block(block: BlockSpec, choices: Choices) -> BlockSpec:
    """Move every field of ``block`` into ``choices`` (first allowed value if not)."""
    vals = {}
    for f in BLOCK_FIELDS:
        allowed = choices.allowed("block", f)
        v = getattr(block, f)
        vals[f] = v if v in allowed else allowed[0]
    return BlockSpec(**vals)


def default_spec() -> ArchSpec:
    """A small plain CNN that is valid under the default Choices (the usual seed)."""
    return ArchSpec(
        stem=StemSpec(out_channels=16, kernel=3, stride=1),
        blocks=(
            BlockSpec(type="conv", out_channels=32, pool="max"),
            BlockSpec(type="conv", out_channels=64, pool="max"),
            BlockSpec(type="conv", out_channels=128, pool="max"),
        ),
        head=HeadSpec(hidden=0, dropout=0.2),
    )


def diff(old: ArchSpec, new: ArchSpec) -> list[str]:
    """Human-readable changes from ``old`` to ``new`` (for proposal cards and rationales).

    Blocks are compared position by position; a changed depth is reported as
    blocks added or removed at the end.
    """
    changes: list[str] = []
    for name in STEM_FIELDS:
        a, b = getattr(old.stem, name), getattr(new.stem, name)
        if a != b:
            changes.append(f"stem.{name}: {a} -> {b}")
    for i in range(max(len(old.blocks), len(new.blocks))):
        if i >= len(old.blocks):
            b = new.blocks[i]
            changes.append(f"blocks[{i}]: added {b.type} {b.out_channels}ch k{b.kernel} s{b.stride}")
            continue
        if i >= len(new.blocks):
            changes.append(f"blocks[{i}]: removed ({old.blocks[i].type} {old.blocks[i].out_channels}ch)")
            continue
        for name in BLOCK_FIELDS:
            a, b = getattr(old.blocks[i], name), getattr(new.blocks[i], name)
            if a != b:
                changes.append(f"blocks[{i}].{name}: {a} -> {b}")
    for name in HEAD_FIELDS:
        a, b = getattr(old.head, name), getattr(new.head, name)
        if a != b:
            changes.append(f"head.{name}: {a} -> {b}")
    return changes
