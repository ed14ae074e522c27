"""Build a PyTorch network from an architecture spec, and count what it costs.

This module owns the mapping from an :class:`~nas_core.space.ArchSpec` to a
:class:`~nas_core.models.layers.SpecNet` and the cost counters (parameters,
MACs, size) that the budget check, the evaluator and the UI share.

The layer structure (attribute names = ``state_dict`` keys) is a contract with
the weight-sharing super-network, whose sub-networks must load into these
models weight for weight; it is documented in :mod:`nas_core.models.layers`:

- ``SpecNet.stem``: ``conv`` (in -> stem.out_channels, kernel, stride, padding
  k//2, no bias) -> ``norm`` (``BatchNorm2d``) -> ``act`` (the first block's
  activation; relu when there are no blocks).
- ``SpecNet.blocks[i]``: one module per block, by type: ``ConvBlock``
  (``conv``, ``norm``, ``act``, ``se``, ``dropout``, ``pool``),
  ``ResidualBlock`` (``conv1``, ``norm1``, ``conv2``, ``norm2``, ``se``,
  ``shortcut[.conv/.norm]``), ``MBConvBlock`` (``expand_conv``/``expand_norm``
  only when expand > 1, ``dw_conv``, ``dw_norm``, ``se``, ``project_conv``,
  ``project_norm``) and ``DWSepBlock`` (``dw_conv``, ``dw_norm``, ``se``,
  ``pw_conv``, ``pw_norm``). ``se`` is an ``Identity`` when off.
- ``SpecNet.head``: ``pool`` -> ``flatten`` -> [``hidden`` Linear -> ``act``
  (the last block's activation)] -> ``dropout`` -> ``fc``.

Costs: :func:`count_macs` runs one image through a ``TorchFunctionMode`` that
counts what ``torch.utils.flop_counter.FlopCounterMode`` counts, by its formulas,
without importing ``torch._dynamo``: convolutions (all groups, so depthwise ones correctly) and matrix
products (the linear layers) only; norms, activations, pools, SE gating, the
residual additions and biases are not counted, which is the usual convention
of MAC tables in papers. :func:`spec_costs` gets the same two numbers by
arithmetic over the layer plan, without building anything (microseconds,
cached per spec; the tests hold it equal to the counters on random specs), so
:func:`check_budget` and :func:`validate_full` can run on every UI edit and
search loops can score params/MACs of every candidate exactly.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nas_core.errors import UserError
from nas_core.models.layers import (
    ACTIVATIONS,
    ConvBlock,
    DWSepBlock,
    Head,
    MBConvBlock,
    ResidualBlock,
    SpecNet,
    Stem,
)
from nas_core.space import ArchSpec, BlockSpec, Choices, validate

logger = logging.getLogger(__name__)

BLOCK_CLASSES = {
    "conv": ConvBlock,
    "residual": ResidualBlock,
    "mbconv": MBConvBlock,
    "dwsep": DWSepBlock,
}


class ModelError(UserError, ValueError):
    """A model cannot be built or loaded from what the user gave (bad shape, unknown name, bad file)."""


def check_shape(input_shape: tuple[int, int, int], n_classes: int) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(
            f"input_shape must be (channels, height, width) with positive sizes, got {tuple(input_shape)!r}"
        )
    if int(n_classes) < 2:
        raise ModelError(f"n_classes must be at least 2, got {n_classes!r}; a classifier needs two classes")
    return shape  # type: ignore[return-value]


def block_kwargs(block: BlockSpec, in_channels: int) -> dict:
    """Constructor arguments of the layer class of ``block`` (also used to generate source)."""
    kwargs = {
        "in_channels": in_channels,
        "out_channels": block.out_channels,
        "kernel": block.kernel,
        "stride": block.stride,
        "norm": block.norm,
        "act": block.act,
        "se": block.se,
        "dropout": float(block.dropout),
        "pool": block.pool,
    }
    if block.type == "mbconv":
        kwargs["expand"] = block.expand
    return kwargs


NORMS = ("batch", "group", "layer", "instance", "none")
POOLS = ("none", "max", "avg")


def buildable_errors(spec: ArchSpec) -> list[str]:
    """What keeps ``spec`` from being built at all, whatever the Choices (unknown names, bad sizes).

    A spec validated against any Choices that ``Choices.from_dict`` accepts is
    buildable; this guards specs that reach the builder unvalidated (a JSON file
    given to the CLI), so they fail with a message instead of a traceback.
    """
    errors = []

    def need(ok: bool, path: str, value: object, rule: str) -> None:
        if not ok:
            errors.append(f"{path} = {value!r}: {rule}")

    def positive(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    def odd(v: object) -> bool:
        return positive(v) and v % 2 == 1

    def rate(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1

    need(positive(spec.stem.out_channels), "stem.out_channels", spec.stem.out_channels, "must be at least 1")
    need(odd(spec.stem.kernel), "stem.kernel", spec.stem.kernel, "must be odd and at least 1")
    need(positive(spec.stem.stride), "stem.stride", spec.stem.stride, "must be at least 1")
    for i, b in enumerate(spec.blocks):
        p = f"blocks[{i}]"
        need(b.type in BLOCK_CLASSES, f"{p}.type", b.type, f"allowed: {list(BLOCK_CLASSES)}")
        need(positive(b.out_channels), f"{p}.out_channels", b.out_channels, "must be at least 1")
        need(odd(b.kernel), f"{p}.kernel", b.kernel, "must be odd and at least 1")
        need(positive(b.stride), f"{p}.stride", b.stride, "must be at least 1")
        need(positive(b.expand), f"{p}.expand", b.expand, "must be at least 1")
        need(b.norm in NORMS, f"{p}.norm", b.norm, f"allowed: {list(NORMS)}")
        need(b.act in ACTIVATIONS, f"{p}.act", b.act, f"allowed: {list(ACTIVATIONS)}")
        need(b.pool in POOLS, f"{p}.pool", b.pool, f"allowed: {list(POOLS)}")
        need(rate(b.dropout), f"{p}.dropout", b.dropout, "must be in [0, 1)")
    hidden = spec.head.hidden
    need(isinstance(hidden, int) and not isinstance(hidden, bool) and hidden >= 0, "head.hidden", hidden,
         "must be 0 (no hidden layer) or more")
    need(rate(spec.head.dropout), "head.dropout", spec.head.dropout, "must be in [0, 1)")
    return errors


def layer_plan(spec: ArchSpec, input_shape: tuple[int, int, int], n_classes: int) -> tuple:
    """The layer classes and constructor arguments of ``spec``'s network.

    Returns:
        ``(stem_kwargs, [(block_class_name, kwargs), ...], head_kwargs)``; the one
        description both :func:`build_model` and the source generator build from.

    Raises:
        ModelError: a bad shape or class count, or a spec that cannot be built
            (see :func:`buildable_errors`).
    """
    channels, _, _ = check_shape(input_shape, n_classes)
    errors = buildable_errors(spec)
    if errors:
        raise ModelError("cannot build this spec: " + "; ".join(errors))
    first_act = spec.blocks[0].act if spec.blocks else "relu"
    last_act = spec.blocks[-1].act if spec.blocks else "relu"
    stem = {
        "in_channels": channels,
        "out_channels": spec.stem.out_channels,
        "kernel": spec.stem.kernel,
        "stride": spec.stem.stride,
        "act": first_act,
    }
    blocks = []
    c = spec.stem.out_channels
    for block in spec.blocks:
        blocks.append((BLOCK_CLASSES[block.type].__name__, block_kwargs(block, c)))
        c = block.out_channels
    head = {
        "in_channels": c,
        "hidden": spec.head.hidden,
        "dropout": float(spec.head.dropout),
        "n_classes": int(n_classes),
        "act": last_act,
    }
    return stem, blocks, head


def build_model(spec: ArchSpec, input_shape: tuple[int, int, int], n_classes: int) -> SpecNet:
    """The network described by ``spec``, freshly initialised.

    Args:
        spec: the architecture (validate it against the run's Choices first).
        input_shape: ``(channels, height, width)`` of one image.
        n_classes: number of output logits.

    Returns:
        A :class:`SpecNet` in training mode whose forward maps
        ``(batch, *input_shape)`` to ``(batch, n_classes)`` logits.

    Raises:
        ModelError: for an impossible input shape or class count, or a spec
            that cannot be built (unknown names, even kernels, dropout >= 1).
    """
    stem_kw, block_plan, head_kw = layer_plan(spec, input_shape, n_classes)
    classes = {cls.__name__: cls for cls in BLOCK_CLASSES.values()}
    blocks = [classes[name](**kw) for name, kw in block_plan]
    return SpecNet(Stem(**stem_kw), blocks, Head(**head_kw))


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return int(sum(p.numel() for p in model.parameters()))


class _MacCounter(TorchFunctionMode):
    """Counts multiply-accumulates of convolutions and matrix products as they run.

    A ``TorchFunctionMode`` over the functional calls (``conv1d/2d/3d``, ``linear``,
    ``matmul``/``mm``/``bmm``/``addmm``/``baddbmm``), so it sees the super-network's sliced
    weights as well as ``nn.Conv2d``/``nn.Linear``. It counts the same operators
    ``torch.utils.flop_counter.FlopCounterMode`` counts, by the same formula (a convolution:
    output elements × input channels per group × kernel size; a product: output elements ×
    the reduced dimension), plus matrix-vector products, which that counter skips (no
    network here has one), without importing ``torch._dynamo`` as that counter does (~3 CPU-s in a
    fresh process, most of a ``supernet measure`` call).
    """

    _CONV = {"conv1d", "conv2d", "conv3d"}
    _PRODUCT = {"linear", "matmul", "mm", "bmm", "__matmul__"}
    _ADD_PRODUCT = {"addmm", "baddbmm"}

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name in self._CONV:
            weight = args[1] if len(args) > 1 else (kwargs or {})["weight"]
            self.macs += out.numel() * math.prod(weight.shape[1:])
        elif name in self._PRODUCT:
            self.macs += out.numel() * args[0].shape[-1]
        elif name in self._ADD_PRODUCT:
            self.macs += out.numel() * args[1].shape[-1]
        return out


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass of one image (convolutions and matmuls only).

    The model is run in eval mode (restored afterwards) on a zero image on the
    model's own device, so a model built on the ``meta`` device costs no compute.
    Counted by :class:`_MacCounter` (the tests hold it equal to ``FlopCounterMode`` / 2).
    """
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = torch.zeros((1, *tuple(int(s) for s in input_shape)), device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    counter = _MacCounter()
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return int(counter.macs)


def model_size_mb(model: nn.Module) -> float:
    """Size of the fp32 parameters and buffers in MB (10^6 bytes), as a saved state_dict would be."""
    n = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for b in model.buffers() if b.is_floating_point()
    )
    return n * 4 / 1e6


def _conv_out(n: int, kernel: int, stride: int) -> int:
    return (n + 2 * (kernel // 2) - kernel) // stride + 1


class _Tally:
    """Exact parameter and MAC arithmetic for the layers of :mod:`nas_core.models.layers`."""

    def __init__(self, h: int, w: int):
        self.params = 0
        self.macs = 0
        self.h, self.w = h, w

    def conv(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             bias: bool = False, move: bool = True) -> None:
        h, w = _conv_out(self.h, kernel, stride), _conv_out(self.w, kernel, stride)
        weights = c_out * (c_in // groups) * kernel * kernel
        self.params += weights + (c_out if bias else 0)
        self.macs += h * w * weights
        if move:
            self.h, self.w = h, w

    def norm(self, kind: str, channels: int) -> None:
        self.params += 0 if kind == "none" else 2 * channels

    def se(self, channels: int) -> None:
        reduced = max(8, channels // 4)
        self.params += 2 * channels * reduced + reduced + channels
        self.macs += 2 * channels * reduced

    def linear(self, n_in: int, n_out: int) -> None:
        self.params += n_in * n_out + n_out
        self.macs += n_in * n_out

    def pool(self, kind: str) -> None:
        if kind != "none":
            self.h, self.w = -(-self.h // 2), -(-self.w // 2)


@functools.lru_cache(maxsize=8192)
def spec_costs(spec: ArchSpec, input_shape: tuple[int, int, int], n_classes: int) -> tuple[int, int]:
    """``(params, macs)`` of ``spec``'s network, by arithmetic (no model is built) and cached.

    Equal to ``count_params`` / ``count_macs`` of :func:`build_model`'s network
    (the tests check this on random specs), but takes microseconds, so search
    loops and the UI can call it for every candidate and every edit.

    Raises:
        ModelError: for an impossible input shape or class count.
    """
    stem, blocks, head = layer_plan(spec, input_shape, n_classes)
    t = _Tally(int(input_shape[1]), int(input_shape[2]))
    t.conv(stem["in_channels"], stem["out_channels"], stem["kernel"], stem["stride"])
    t.norm("batch", stem["out_channels"])
    for kind, kw in blocks:
        c_in, c_out, k, s, norm = kw["in_channels"], kw["out_channels"], kw["kernel"], kw["stride"], kw["norm"]
        bias = norm == "none"
        if kind == "ConvBlock":
            t.conv(c_in, c_out, k, s, bias=bias)
            t.norm(norm, c_out)
            if kw["se"]:
                t.se(c_out)
        elif kind == "ResidualBlock":
            if s != 1 or c_in != c_out:
                t.conv(c_in, c_out, 1, s, bias=bias, move=False)
                t.norm(norm, c_out)
            t.conv(c_in, c_out, k, s, bias=bias)
            t.conv(c_out, c_out, k, 1, bias=bias)
            t.norm(norm, c_out)
            t.norm(norm, c_out)
            if kw["se"]:
                t.se(c_out)
        elif kind == "MBConvBlock":
            hidden = c_in * kw["expand"]
            if kw["expand"] > 1:
                t.conv(c_in, hidden, 1, bias=bias)
                t.norm(norm, hidden)
            t.conv(hidden, hidden, k, s, groups=hidden, bias=bias)
            t.norm(norm, hidden)
            if kw["se"]:
                t.se(hidden)
            t.conv(hidden, c_out, 1, bias=bias)
            t.norm(norm, c_out)
        else:  # DWSepBlock
            t.conv(c_in, c_in, k, s, groups=c_in, bias=bias)
            t.norm(norm, c_in)
            if kw["se"]:
                t.se(c_in)
            t.conv(c_in, c_out, 1, bias=bias)
            t.norm(norm, c_out)
        t.pool(kw["pool"])
    width = head["in_channels"]
    if head["hidden"] > 0:
        t.linear(width, head["hidden"])
        width = head["hidden"]
    t.linear(width, head["n_classes"])
    return t.params, t.macs


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def check_budget(
    spec: ArchSpec, choices: Choices, input_shape: tuple[int, int, int], n_classes: int
) -> list[str]:
    """Messages for every cap of ``choices`` that ``spec``'s network breaks; empty when it fits.

    Args:
        spec: the architecture.
        choices: the run's Choices (``max_params`` / ``max_macs``; ``None`` = no cap).
        input_shape: ``(channels, height, width)`` of one image at the training resolution.
        n_classes: number of classes.
    """
    if choices.max_params is None and choices.max_macs is None:
        return []
    shape = tuple(int(s) for s in input_shape)
    params, macs = spec_costs(spec, shape, int(n_classes))
    errors = []
    if choices.max_params is not None and params > choices.max_params:
        errors.append(
            f"model: {params:,} parameters ({_human(params)}) is over the cap of {choices.max_params:,} "
            f"({_human(choices.max_params)}); use fewer or narrower blocks (out_channels), a smaller "
            "expand, or a smaller head.hidden, or raise max_params"
        )
    if choices.max_macs is not None and macs > choices.max_macs:
        errors.append(
            f"model: {macs:,} MACs ({_human(macs)}) at {shape[1]}x{shape[2]} px is over the cap of "
            f"{choices.max_macs:,} ({_human(choices.max_macs)}); downsample earlier (stride 2 or a pool), "
            "use narrower or fewer blocks, smaller kernels or cheaper block types (mbconv, dwsep), "
            "or raise max_macs"
        )
    return errors


def _norm_size_errors(spec: ArchSpec, input_shape: tuple[int, int, int]) -> list[str]:
    """Instance norm needs more than one pixel per channel; say where a spec breaks that."""
    size_h, size_w = -(-input_shape[1] // spec.stem.stride), -(-input_shape[2] // spec.stem.stride)
    errors = []
    for i, block in enumerate(spec.blocks):
        # Every norm of a block sees the strided map (an mbconv's expand norm sees the larger input).
        size_h, size_w = -(-size_h // block.stride), -(-size_w // block.stride)
        pixels = size_h * size_w
        if block.norm == "instance" and pixels <= 1:
            errors.append(
                f"blocks[{i}].norm = 'instance' normalizes each channel over its pixels, but the feature "
                "map is 1x1 here; use another norm, or downsample less before this block"
            )
        if block.pool != "none":
            size_h, size_w = -(-size_h // 2), -(-size_w // 2)
    return errors


def validate_full(
    spec: ArchSpec, choices: Choices, input_shape: tuple[int, int, int], n_classes: int
) -> list[str]:
    """Everything wrong with ``spec`` for this run: the Choices, the resolution and the caps.

    The caps are checked only when the spec is otherwise valid (an invalid spec
    might not even build). Fast enough to call on every edit (cached costs).

    Returns:
        One message per problem; empty when the spec can be built and trained.
    """
    shape = check_shape(input_shape, n_classes)
    errors = validate(spec, choices, shape[-1])
    if errors:
        return errors
    errors = _norm_size_errors(spec, shape)
    if errors:
        return errors
    return check_budget(spec, choices, shape, n_classes)
