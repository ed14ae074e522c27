"""The super-network's search space: what a sub-network is, and how it maps to an ArchSpec.

Owns :class:`StageConfig` and :class:`SupernetSpaceConfig` (the shape of the
elastic MobileNetV3-style super-network: a stem, stages of MBConv blocks, a
linear head), :class:`SubnetConfig` (one sub-network: depth and width per stage,
kernel and expand ratio per active block), the mapping to an ordinary
:class:`~nas_core.space.ArchSpec` (:func:`to_arch_spec`) and back
(:func:`spec_to_config`), :func:`validate_subnet_spec` (is an arbitrary spec a
sub-network?), :func:`choices_for_supernet` (the closest :class:`Choices` for
designers) and :class:`SupernetSpace`, the integer-gene plug-in for LINAS.

Decisions:
- A :class:`SubnetConfig` lists kernels/expands of the *active* blocks only, so
  two configs that differ only in inactive genes (slots past a stage's depth)
  are the same object and share a key by construction.
- The first block of a stage carries the stage's stride; the others stride 1.
  Activation and SE are fixed per stage (as in MobileNetV3), not searched.
- Every block is ``mbconv`` with batch norm, no dropout, no pool; the head has
  no hidden layer. This is the sub-network's whole ArchSpec; nothing else varies.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas_core.errors import UserError
from nas_core.searchspace import Gene, SearchSpace
from nas_core.space import ArchSpec, BlockSpec, Choices, HeadSpec, SpecError, StemSpec

#: Bump when the checkpoint layout or the meaning of a config changes; older checkpoints are refused.
SCHEMA_VERSION = 1

ACTS = ("relu", "relu6", "silu", "gelu", "hardswish")


class SubnetError(UserError, ValueError):
    """A sub-network config or spec is not part of the super-network's space.

    Attributes:
        errors: one line per problem, naming the field, the value and what is allowed.
    """

    def __init__(self, errors: Sequence[str]):
        self.errors = tuple(errors)
        super().__init__("; ".join(self.errors) if self.errors else "not a sub-network of this super-network")


@dataclass(frozen=True)
class StageConfig:
    """One stage of MBConv blocks of the super-network."""

    widths: tuple[int, ...]  # elastic output widths, ascending; the largest is the super-network's
    depths: tuple[int, ...] = (1, 2, 3)  # elastic number of blocks, ascending
    stride: int = 2  # stride of the stage's first block
    act: str = "relu"  # activation of every block of the stage (fixed, as in MobileNetV3)
    se: bool = False  # squeeze-and-excitation in every block of the stage (fixed)


def _default_stages() -> tuple[StageConfig, ...]:
    # MobileNetV3-small-like at 64 px: 4 downsamplings to 4x4, relu early and hardswish late,
    # SE in alternate stages. Widths are values of the default Choices so sub-networks stay valid there.
    return (
        StageConfig(widths=(16, 24), depths=(1, 2), stride=2, act="relu", se=False),
        StageConfig(widths=(24, 32), depths=(1, 2, 3), stride=2, act="relu", se=True),
        StageConfig(widths=(48, 64), depths=(1, 2, 3), stride=2, act="hardswish", se=False),
        StageConfig(widths=(64, 96), depths=(1, 2, 3), stride=1, act="hardswish", se=True),
    )


@dataclass(frozen=True)
class SupernetSpaceConfig:
    """The super-network's architecture: every elastic dimension and its allowed values."""

    stem_widths: tuple[int, ...] = (16,)  # elastic stem widths, ascending
    stem_kernel: int = 3  # fixed stem kernel
    stem_stride: int = 2  # 2 halves 64 px to 32 px before the first stage (cheap on a CPU)
    stages: tuple[StageConfig, ...] = field(default_factory=_default_stages)
    kernels: tuple[int, ...] = (3, 5, 7)  # elastic depthwise kernels; smaller ones are centre crops
    expands: tuple[int, ...] = (3, 4, 6)  # elastic expand ratios (hidden = input width x ratio)
    head_dropout: float = 0.1  # dropout before the classifier (fixed)
    kernel_transform: bool = False  # Once-for-All's kernel transformation matrices for 5x5 and 3x3

    def __post_init__(self) -> None:
        errors = _check_space(self)
        if errors:
            raise SubnetError(errors)

    @property
    def max_kernel(self) -> int:
        """The stored kernel size; smaller kernels are cropped from it."""
        return max(self.kernels)

    @property
    def max_depths(self) -> tuple[int, ...]:
        """Largest depth of every stage (= block slots per stage)."""
        return tuple(max(s.depths) for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        return {
            "stem_widths": list(self.stem_widths),
            "stem_kernel": self.stem_kernel,
            "stem_stride": self.stem_stride,
            "stages": [
                {
                    "widths": list(s.widths),
                    "depths": list(s.depths),
                    "stride": s.stride,
                    "act": s.act,
                    "se": s.se,
                }
                for s in self.stages
            ],
            "kernels": list(self.kernels),
            "expands": list(self.expands),
            "head_dropout": self.head_dropout,
            "kernel_transform": self.kernel_transform,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupernetSpaceConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            SubnetError: unknown fields or values that do not make a super-network.
        """
        allowed = set(cls().to_dict())
        unknown = set(data) - allowed
        if unknown:
            raise SubnetError(
                [f"space config: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}"]
            )
        d = dict(data)
        try:
            if "stages" in d:
                d["stages"] = tuple(
                    StageConfig(
                        widths=tuple(int(w) for w in s["widths"]),
                        depths=tuple(int(x) for x in s.get("depths", (1, 2, 3))),
                        stride=int(s.get("stride", 2)),
                        act=str(s.get("act", "relu")),
                        se=bool(s.get("se", False)),
                    )
                    for s in d["stages"]
                )
            for name in ("stem_widths", "kernels", "expands"):
                if name in d:
                    d[name] = tuple(int(v) for v in d[name])
        except (KeyError, TypeError, ValueError) as exc:
            raise SubnetError([f"space config is malformed: {exc}"]) from exc
        return cls(**d)

    @property
    def key(self) -> str:
        """A 12-hex-digit hash of the config: checkpoints of different spaces never mix."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def tiny(cls) -> SupernetSpaceConfig:
        """A very small space for tests and smoke runs (32 px friendly)."""
        return cls(
            stem_widths=(8,),
            stem_kernel=3,
            stem_stride=1,
            stages=(
                StageConfig(widths=(8, 12), depths=(1, 2), stride=2, act="relu", se=False),
                StageConfig(widths=(12, 16), depths=(1, 2), stride=2, act="hardswish", se=True),
            ),
            kernels=(3, 5, 7),
            expands=(3, 4, 6),
            head_dropout=0.0,
        )


def _check_space(cfg: SupernetSpaceConfig) -> list[str]:
    errors: list[str] = []

    def ascending_positive(name: str, values: tuple[int, ...]) -> None:
        if not values or any(v < 1 for v in values) or list(values) != sorted(set(values)):
            errors.append(f"{name} = {list(values)}: must be a non-empty ascending list of positive integers")

    ascending_positive("stem_widths", cfg.stem_widths)
    ascending_positive("expands", cfg.expands)
    if not cfg.stages:
        errors.append("stages: at least one stage is needed")
    for i, s in enumerate(cfg.stages):
        ascending_positive(f"stages[{i}].widths", s.widths)
        ascending_positive(f"stages[{i}].depths", s.depths)
        if s.stride not in (1, 2):
            errors.append(f"stages[{i}].stride = {s.stride}: allowed 1 or 2")
        if s.act not in ACTS:
            errors.append(f"stages[{i}].act = {s.act!r}: allowed {list(ACTS)}")
    if (
        not cfg.kernels
        or list(cfg.kernels) != sorted(set(cfg.kernels))
        or any(k % 2 == 0 for k in cfg.kernels)
    ):
        errors.append(f"kernels = {list(cfg.kernels)}: must be ascending odd sizes, e.g. [3, 5, 7]")
    if cfg.kernel_transform and list(cfg.kernels) != [3, 5, 7][-len(cfg.kernels) :]:
        errors.append("kernel_transform needs kernels [3, 5, 7] (or a suffix of it)")
    if cfg.stem_stride not in (1, 2) or cfg.stem_kernel % 2 == 0:
        errors.append("stem_stride must be 1 or 2 and stem_kernel odd")
    if not 0.0 <= cfg.head_dropout < 1.0:
        errors.append(f"head_dropout = {cfg.head_dropout}: must be in [0, 1)")
    return errors


@dataclass(frozen=True)
class SubnetConfig:
    """One sub-network: the value of every active elastic gene.

    ``kernels[s]`` and ``expands[s]`` hold one value per *active* block of stage
    ``s`` (their length equals ``depths[s]``).
    """

    stem_width: int
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "stem_width": self.stem_width,
            "depths": list(self.depths),
            "widths": list(self.widths),
            "kernels": [list(k) for k in self.kernels],
            "expands": [list(e) for e in self.expands],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetConfig:
        """Inverse of :meth:`to_dict` (no check against a space: see :func:`check_config`).

        Raises:
            SubnetError: missing fields or wrong types.
        """
        if not isinstance(data, Mapping):
            raise SubnetError([f"a sub-network config must be an object, got {type(data).__name__}"])
        allowed = {"stem_width", "depths", "widths", "kernels", "expands"}
        unknown = set(data) - allowed
        missing = allowed - set(data)
        if unknown or missing:
            raise SubnetError(
                [
                    f"sub-network config: unknown {sorted(unknown)} / missing {sorted(missing)}; fields: {sorted(allowed)}"
                ]
            )
        try:
            return cls(
                stem_width=int(data["stem_width"]),
                depths=tuple(int(d) for d in data["depths"]),
                widths=tuple(int(w) for w in data["widths"]),
                kernels=tuple(tuple(int(k) for k in ks) for ks in data["kernels"]),
                expands=tuple(tuple(int(e) for e in es) for es in data["expands"]),
            )
        except (TypeError, ValueError) as exc:
            raise SubnetError([f"sub-network config has a value of the wrong type: {exc}"]) from exc

    @property
    def key(self) -> str:
        """Canonical key (inactive genes are not part of the config at all)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_errors(config: SubnetConfig, space: SupernetSpaceConfig) -> list[str]:
    """Every way ``config`` lies outside ``space``; empty means it is a sub-network."""
    errors: list[str] = []
    if config.stem_width not in space.stem_widths:
        errors.append(f"stem_width = {config.stem_width} is not allowed; allowed: {list(space.stem_widths)}")
    n = len(space.stages)
    for name in ("depths", "widths", "kernels", "expands"):
        if len(getattr(config, name)) != n:
            errors.append(f"{name}: {len(getattr(config, name))} stage(s) given; the super-network has {n}")
    if errors:
        return errors
    for s, stage in enumerate(space.stages):
        d = config.depths[s]
        if d not in stage.depths:
            errors.append(f"depths[{s}] = {d} is not allowed; allowed: {list(stage.depths)}")
        if config.widths[s] not in stage.widths:
            errors.append(f"widths[{s}] = {config.widths[s]} is not allowed; allowed: {list(stage.widths)}")
        for name, allowed in (("kernels", space.kernels), ("expands", space.expands)):
            vals = getattr(config, name)[s]
            if len(vals) != d:
                errors.append(f"{name}[{s}] has {len(vals)} value(s); depths[{s}] = {d} needs exactly {d}")
            for i, v in enumerate(vals):
                if v not in allowed:
                    errors.append(f"{name}[{s}][{i}] = {v} is not allowed; allowed: {list(allowed)}")
    return errors


def check_config(config: SubnetConfig | Mapping[str, Any], space: SupernetSpaceConfig) -> SubnetConfig:
    """Parse (if needed) and validate a config.

    Raises:
        SubnetError: naming every gene outside the space and its allowed values.
    """
    if not isinstance(config, SubnetConfig):
        config = SubnetConfig.from_dict(config)
    errors = config_errors(config, space)
    if errors:
        raise SubnetError(errors)
    return config


def largest(space: SupernetSpaceConfig) -> SubnetConfig:
    """The full super-network."""
    return SubnetConfig(
        stem_width=max(space.stem_widths),
        depths=space.max_depths,
        widths=tuple(max(s.widths) for s in space.stages),
        kernels=tuple((space.max_kernel,) * max(s.depths) for s in space.stages),
        expands=tuple((max(space.expands),) * max(s.depths) for s in space.stages),
    )


def smallest(space: SupernetSpaceConfig) -> SubnetConfig:
    """The smallest sub-network (every gene at its minimum)."""
    return SubnetConfig(
        stem_width=min(space.stem_widths),
        depths=tuple(min(s.depths) for s in space.stages),
        widths=tuple(min(s.widths) for s in space.stages),
        kernels=tuple((min(space.kernels),) * min(s.depths) for s in space.stages),
        expands=tuple((min(space.expands),) * min(s.depths) for s in space.stages),
    )


def sample_config(space: SupernetSpaceConfig, rng: random.Random) -> SubnetConfig:
    """A uniformly random sub-network (every gene uniform, independently)."""
    depths = tuple(rng.choice(s.depths) for s in space.stages)
    return SubnetConfig(
        stem_width=rng.choice(space.stem_widths),
        depths=depths,
        widths=tuple(rng.choice(s.widths) for s in space.stages),
        kernels=tuple(tuple(rng.choice(space.kernels) for _ in range(d)) for d in depths),
        expands=tuple(tuple(rng.choice(space.expands) for _ in range(d)) for d in depths),
    )


# ---------------------------------------------------------------------------------------------
# Mapping to and from ordinary ArchSpecs


def to_arch_spec(config: SubnetConfig, space: SupernetSpaceConfig) -> ArchSpec:
    """The ordinary spec of a sub-network; ``build_model`` builds it as a standalone network.

    Raises:
        SubnetError: when ``config`` is not in ``space``.
    """
    config = check_config(config, space)
    blocks = []
    for s, stage in enumerate(space.stages):
        for i in range(config.depths[s]):
            blocks.append(
                BlockSpec(
                    type="mbconv",
                    out_channels=config.widths[s],
                    kernel=config.kernels[s][i],
                    stride=stage.stride if i == 0 else 1,
                    expand=config.expands[s][i],
                    norm="batch",
                    act=stage.act,
                    se=stage.se,
                    dropout=0.0,
                    pool="none",
                )
            )
    return ArchSpec(
        stem=StemSpec(out_channels=config.stem_width, kernel=space.stem_kernel, stride=space.stem_stride),
        blocks=tuple(blocks),
        head=HeadSpec(hidden=0, dropout=round(float(space.head_dropout), 4)),
    )


def _fixed_field_errors(spec: ArchSpec, space: SupernetSpaceConfig) -> list[str]:
    errors = []
    if spec.stem.out_channels not in space.stem_widths:
        errors.append(
            f"stem.out_channels = {spec.stem.out_channels}; the super-network allows {list(space.stem_widths)}"
        )
    if spec.stem.kernel != space.stem_kernel:
        errors.append(
            f"stem.kernel = {spec.stem.kernel}; the super-network's stem kernel is {space.stem_kernel}"
        )
    if spec.stem.stride != space.stem_stride:
        errors.append(
            f"stem.stride = {spec.stem.stride}; the super-network's stem stride is {space.stem_stride}"
        )
    if spec.head.hidden != 0:
        errors.append(f"head.hidden = {spec.head.hidden}; sub-networks have no hidden head layer (use 0)")
    if round(spec.head.dropout, 4) != round(space.head_dropout, 4):
        errors.append(
            f"head.dropout = {spec.head.dropout}; the super-network's head dropout is {space.head_dropout}"
        )
    for i, b in enumerate(spec.blocks):
        fixed = {"type": "mbconv", "norm": "batch", "dropout": 0.0, "pool": "none"}
        for name, want in fixed.items():
            if getattr(b, name) != want:
                errors.append(f"blocks[{i}].{name} = {getattr(b, name)!r}; sub-networks use {want!r}")
    return errors


def _stage_errors(
    blocks: Sequence[BlockSpec], start: int, s: int, stage: StageConfig, space: SupernetSpaceConfig
) -> list[str]:
    errors = []
    width = blocks[0].out_channels
    if width not in stage.widths:
        errors.append(f"blocks[{start}].out_channels = {width}; stage {s} allows {list(stage.widths)}")
    for i, b in enumerate(blocks):
        j = start + i
        want_stride = stage.stride if i == 0 else 1
        if b.stride != want_stride:
            errors.append(f"blocks[{j}].stride = {b.stride}; block {i} of stage {s} has stride {want_stride}")
        if b.out_channels != width:
            errors.append(
                f"blocks[{j}].out_channels = {b.out_channels}; every block of stage {s} has one width ({width})"
            )
        if b.kernel not in space.kernels:
            errors.append(f"blocks[{j}].kernel = {b.kernel}; allowed: {list(space.kernels)}")
        if b.expand not in space.expands:
            errors.append(f"blocks[{j}].expand = {b.expand}; allowed: {list(space.expands)}")
        if b.act != stage.act:
            errors.append(f"blocks[{j}].act = {b.act!r}; stage {s} uses {stage.act!r}")
        if b.se != stage.se:
            errors.append(f"blocks[{j}].se = {b.se}; stage {s} uses se={stage.se}")
    return errors


def _best_split(spec: ArchSpec, space: SupernetSpaceConfig) -> tuple[tuple[int, ...] | None, list[str]]:
    """The stage depths that explain ``spec`` best, with the errors that remain under them."""
    n = len(spec.blocks)
    best: tuple[tuple[int, ...] | None, list[str]] = (None, [])
    for depths in itertools.product(*(s.depths for s in space.stages)):
        if sum(depths) != n:
            continue
        errors: list[str] = []
        start = 0
        for s, (stage, d) in enumerate(zip(space.stages, depths)):
            errors += _stage_errors(spec.blocks[start : start + d], start, s, stage, space)
            start += d
        if best[0] is None or len(errors) < len(best[1]):
            best = (tuple(depths), errors)
            if not errors:
                break
    return best


def validate_subnet_spec(spec: ArchSpec, space: SupernetSpaceConfig | None = None) -> list[str]:
    """Whether an arbitrary spec is a sub-network of the super-network.

    Args:
        spec: any spec (e.g. an LLM's or the heuristic designer's proposal).
        space: the super-network's space (default: :class:`SupernetSpaceConfig`'s defaults).

    Returns:
        One message per problem, naming the field, its value and what the super-network
        allows; an empty list means the spec is a sub-network.
    """
    space = space or SupernetSpaceConfig()
    errors = _fixed_field_errors(spec, space)
    lo = sum(min(s.depths) for s in space.stages)
    hi = sum(max(s.depths) for s in space.stages)
    if not lo <= len(spec.blocks) <= hi:
        errors.append(f"blocks: {len(spec.blocks)} block(s); sub-networks have {lo} to {hi}")
        return errors
    depths, stage_errors = _best_split(spec, space)
    if depths is None:
        per_stage = ", ".join(f"stage {s}: {list(st.depths)}" for s, st in enumerate(space.stages))
        errors.append(f"blocks: {len(spec.blocks)} blocks cannot be split into stages ({per_stage})")
    return errors + stage_errors


def spec_to_config(spec: ArchSpec, space: SupernetSpaceConfig | None = None) -> SubnetConfig:
    """Inverse of :func:`to_arch_spec`.

    Raises:
        SubnetError: when the spec is not a sub-network, with every reason.
    """
    space = space or SupernetSpaceConfig()
    errors = validate_subnet_spec(spec, space)
    if errors:
        raise SubnetError(errors)
    depths, _ = _best_split(spec, space)
    assert depths is not None
    widths, kernels, expands = [], [], []
    start = 0
    for d in depths:
        blocks = spec.blocks[start : start + d]
        widths.append(blocks[0].out_channels)
        kernels.append(tuple(b.kernel for b in blocks))
        expands.append(tuple(b.expand for b in blocks))
        start += d
    return SubnetConfig(
        stem_width=spec.stem.out_channels,
        depths=tuple(depths),
        widths=tuple(widths),
        kernels=tuple(kernels),
        expands=tuple(expands),
    )


def choices_for_supernet(space: SupernetSpaceConfig | None = None) -> Choices:
    """The :class:`Choices` closest to the super-network's space, for designers.

    Every sub-network's spec is valid under them; the converse does not hold
    (Choices cannot say "this width only in stage 2"), so check proposals with
    :func:`validate_subnet_spec` as well.
    """
    space = space or SupernetSpaceConfig()
    widths = sorted({w for s in space.stages for w in s.widths})
    acts = tuple(dict.fromkeys(s.act for s in space.stages))
    ses = tuple(sorted({s.se for s in space.stages}))
    strides = tuple(sorted({1} | {s.stride for s in space.stages}))
    base = Choices()
    return Choices(
        min_blocks=sum(min(s.depths) for s in space.stages),
        max_blocks=sum(max(s.depths) for s in space.stages),
        stem_out_channels=tuple(space.stem_widths),
        stem_kernel=(space.stem_kernel,),
        stem_stride=(space.stem_stride,),
        type=("mbconv",),
        out_channels=tuple(widths),
        kernel=tuple(space.kernels),
        stride=strides,
        expand=tuple(space.expands),
        norm=("batch",),
        act=acts,
        se=ses,
        dropout=(0.0,),
        pool=("none",),
        head_hidden=(0,),
        head_dropout=(round(float(space.head_dropout), 4),),
        max_params=base.max_params,
        max_macs=base.max_macs,
    )


# ---------------------------------------------------------------------------------------------
# Cost model (exact, no network needed)


def count_subnet_params(
    config: SubnetConfig, space: SupernetSpaceConfig, n_classes: int, in_channels: int = 3
) -> int:
    """Parameters of the standalone sub-network (convs without bias, BN affine, SE with bias, fc)."""
    c = config.stem_width
    total = c * in_channels * space.stem_kernel**2 + 2 * c
    for s, stage in enumerate(space.stages):
        for i in range(config.depths[s]):
            k, e, out = config.kernels[s][i], config.expands[s][i], config.widths[s]
            hid = c * e
            total += c * hid + 2 * hid  # expand conv + BN
            total += hid * k * k + 2 * hid  # depthwise + BN
            if stage.se:
                r = max(8, hid // 4)
                total += hid * r + r + r * hid + hid
            total += hid * out + 2 * out  # project + BN
            c = out
    return total + c * n_classes + n_classes


def count_subnet_macs(
    config: SubnetConfig, space: SupernetSpaceConfig, n_classes: int, image_size: int, in_channels: int = 3
) -> int:
    """Multiply-accumulates of convolutions and linear layers for one image.

    Counts what ``torch.utils.flop_counter`` counts (convolutions, matrix products), so it
    agrees with :func:`nas_core.models.count_macs`; norms, activations, adds and pooling are free.
    """

    def out_size(size: int, stride: int) -> int:
        return (size - 1) // stride + 1  # padding k//2 with odd k

    size = out_size(image_size, space.stem_stride)
    c = config.stem_width
    total = size * size * c * in_channels * space.stem_kernel**2
    for s, stage in enumerate(space.stages):
        for i in range(config.depths[s]):
            k, e, out = config.kernels[s][i], config.expands[s][i], config.widths[s]
            stride = stage.stride if i == 0 else 1
            hid = c * e
            total += size * size * c * hid
            size = out_size(size, stride)
            total += size * size * hid * k * k
            if stage.se:
                r = max(8, hid // 4)
                total += hid * r + r * hid
            total += size * size * hid * out
            c = out
    return total + c * n_classes


# ---------------------------------------------------------------------------------------------
# Integer genes for LINAS


class SupernetSpace(SearchSpace):
    """The super-network's sub-networks as integer genes: a LINAS search-space plug-in.

    Genes, in order (all ordered, ``kind="int"``): stem width index; per stage depth
    index and width index; per stage and block slot (max depth) kernel index and expand
    index. Slots past a stage's depth are inactive: :meth:`decode` ignores them,
    :meth:`encode` and :meth:`canonical` write 0. Keys are the sub-network's ArchSpec
    key, so a run's candidates dedup the same way in both evaluation modes. Parameters
    and MACs are exact and vectorized (cheap for every inner-search visit).

    Args:
        space: the super-network's space (default: :class:`SupernetSpaceConfig`'s defaults).
        n_classes: classes of the data set (the classifier's size).
        image_size: the square training resolution (for MACs).
    """

    exact_names = ("params", "macs")
    exact_is_cheap = True

    def __init__(self, space: SupernetSpaceConfig | None = None, n_classes: int = 8, image_size: int = 64):
        self.space = space or SupernetSpaceConfig()
        self.n_classes = int(n_classes)
        self.image_size = int(image_size)
        sp = self.space
        genes = [Gene("stem_width", len(sp.stem_widths))]
        for s, stage in enumerate(sp.stages):
            genes += [Gene(f"depth{s}", len(stage.depths)), Gene(f"width{s}", len(stage.widths))]
        self._slots: list[tuple[int, int, int]] = []  # (stage, index in stage, kernel gene column)
        for s, stage in enumerate(sp.stages):
            for i in range(max(stage.depths)):
                self._slots.append((s, i, len(genes)))
                genes += [Gene(f"kernel{s}.{i}", len(sp.kernels)), Gene(f"expand{s}.{i}", len(sp.expands))]
        self.genes = tuple(genes)
        self.gene_names: tuple[str, ...] = tuple(g.name for g in genes)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive lower and upper bound of every gene."""
        return np.zeros(self.n_var, dtype=np.int64), self.upper

    def encode(self, config: SubnetConfig) -> np.ndarray:
        """Integer genes of ``config`` (inactive slots are 0).

        Raises:
            SubnetError: when ``config`` is not in the space.
        """
        config = check_config(config, self.space)
        sp = self.space
        genes = [sp.stem_widths.index(config.stem_width)]
        for s, stage in enumerate(sp.stages):
            genes += [stage.depths.index(config.depths[s]), stage.widths.index(config.widths[s])]
        for s, i, _ in self._slots:
            if i < config.depths[s]:
                genes += [sp.kernels.index(config.kernels[s][i]), sp.expands.index(config.expands[s][i])]
            else:
                genes += [0, 0]
        return np.asarray(genes, dtype=np.int64)

    def decode(self, x: Sequence[int] | np.ndarray) -> SubnetConfig:
        """Config of integer genes; genes out of bounds are clipped into range."""
        x = [int(round(float(v))) for v in x]
        if len(x) != self.n_var:
            raise SubnetError([f"encoding has {len(x)} genes; the super-network space has {self.n_var}"])
        x = [min(max(v, 0), g.n - 1) for v, g in zip(x, self.genes)]
        sp = self.space
        depths = [stage.depths[x[1 + 2 * s]] for s, stage in enumerate(sp.stages)]
        widths = [stage.widths[x[2 + 2 * s]] for s, stage in enumerate(sp.stages)]
        kernels: list[list[int]] = [[] for _ in sp.stages]
        expands: list[list[int]] = [[] for _ in sp.stages]
        for s, i, col in self._slots:
            if i < depths[s]:
                kernels[s].append(sp.kernels[x[col]])
                expands[s].append(sp.expands[x[col + 1]])
        return SubnetConfig(
            stem_width=sp.stem_widths[x[0]],
            depths=tuple(depths),
            widths=tuple(widths),
            kernels=tuple(tuple(k) for k in kernels),
            expands=tuple(tuple(e) for e in expands),
        )

    def key(self, config: SubnetConfig) -> str:
        """Canonical key; the same as the key of the sub-network's ArchSpec."""
        return to_arch_spec(config, self.space).key

    def canonical(self, X: np.ndarray) -> np.ndarray:
        """Rows with the genes of inactive block slots zeroed."""
        X = np.array(X, dtype=np.int64, copy=True).reshape(-1, self.n_var)
        depth_of = [np.asarray(st.depths)[X[:, 1 + 2 * s]] for s, st in enumerate(self.space.stages)]
        for s, i, col in self._slots:
            X[depth_of[s] <= i, col : col + 2] = 0
        return X

    def ids(self, X: np.ndarray) -> np.ndarray:
        """Canonical rows as bytes (a canonical row determines the config and its key)."""
        C = np.ascontiguousarray(self.canonical(X))
        return np.array([r.tobytes() for r in C], dtype=object)

    def sample_configs(self, rng: random.Random, n: int) -> list[SubnetConfig]:
        """``n`` random configs, every gene uniform (with replacement)."""
        return [sample_config(self.space, rng) for _ in range(n)]

    def exact_objectives(self, configs: Sequence[SubnetConfig]) -> dict[str, np.ndarray]:
        """Parameters and MACs of every config, computed exactly without building a network."""
        return self.exact_array(np.array([self.encode(c) for c in configs]).reshape(-1, self.n_var))

    def exact_array(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters and MACs of gene rows, vectorized (see :func:`count_subnet_params`)."""
        X = np.asarray(X, dtype=np.int64).reshape(-1, self.n_var)
        sp = self.space
        kern = np.asarray(sp.kernels)
        expd = np.asarray(sp.expands)
        c = np.asarray(sp.stem_widths)[X[:, 0]].astype(np.float64)
        size = (self.image_size - 1) // sp.stem_stride + 1
        sizes = np.full(len(X), float(size))
        params = c * 3 * sp.stem_kernel**2 + 2 * c
        macs = sizes**2 * c * 3 * sp.stem_kernel**2
        depth_of = [np.asarray(st.depths)[X[:, 1 + 2 * s]] for s, st in enumerate(sp.stages)]
        width_of = [
            np.asarray(st.widths)[X[:, 2 + 2 * s]].astype(np.float64) for s, st in enumerate(sp.stages)
        ]
        for s, i, col in self._slots:
            stage = sp.stages[s]
            on = depth_of[s] > i
            k = kern[X[:, col]].astype(np.float64)
            e = expd[X[:, col + 1]].astype(np.float64)
            out = width_of[s]
            hid = c * e
            p = c * hid + 2 * hid + hid * k * k + 2 * hid + hid * out + 2 * out
            stride = stage.stride if i == 0 else 1
            new_sizes = np.floor((sizes - 1) / stride) + 1
            m = sizes**2 * c * hid + new_sizes**2 * (hid * k * k + hid * out)
            if stage.se:
                r = np.maximum(8, np.floor(hid / 4))
                p = p + 2 * hid * r + r + hid
                m = m + 2 * hid * r
            params = np.where(on, params + p, params)
            macs = np.where(on, macs + m, macs)
            sizes = np.where(on, new_sizes, sizes)
            c = np.where(on, out, c)
        params = params + c * self.n_classes + self.n_classes
        macs = macs + c * self.n_classes
        return {"params": params, "macs": macs}

    def to_spec(self, config: SubnetConfig) -> ArchSpec:
        """The sub-network's ArchSpec (see :func:`to_arch_spec`)."""
        return to_arch_spec(config, self.space)

    def from_spec(self, spec: ArchSpec) -> SubnetConfig:
        """The config of a sub-network spec (see :func:`spec_to_config`)."""
        return spec_to_config(spec, self.space)


class SubnetSpecSpace:
    """A :class:`SupernetSpace` that speaks ArchSpec, for the session's designers.

    The LINAS/NSGA-II/random designers encode measured candidates and decode their
    picks as ArchSpecs; in a super-network run those must be sub-networks, so the
    designers search this space instead of the general CNN space (where most picks
    would not be sub-networks and would be filtered out). Everything but the spec
    conversion is the wrapped space's.
    """

    def __init__(self, space: SupernetSpaceConfig | None = None, n_classes: int = 8, image_size: int = 64):
        self._cfg = space or SupernetSpaceConfig()
        self._inner = SupernetSpace(self._cfg, n_classes=n_classes, image_size=image_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def encode(self, spec: ArchSpec) -> np.ndarray:
        """Genes of a sub-network spec.

        Raises:
            SpecError: the spec is not a sub-network of this super-network.
        """
        try:
            config = spec_to_config(spec, self._cfg)
        except SubnetError as exc:
            raise SpecError(list(exc.errors)) from exc
        return self._inner.encode(config)

    def decode(self, x: Sequence[int] | np.ndarray) -> ArchSpec:
        """The sub-network of a gene row, as an ArchSpec."""
        return to_arch_spec(self._inner.decode(x), self._cfg)

    def key(self, spec: ArchSpec) -> str:
        """The spec's canonical key (the wrapped space keys sub-networks the same way)."""
        return spec.key

    def cap_errors(self, spec: ArchSpec) -> list[str]:
        """Sub-networks are bounded by the super-network itself; no further caps apply."""
        return []
