"""The offline heuristic designer: practitioner rules that edit the best-so-far spec.

Owns :class:`HeuristicDesigner`, the default engine when no LLM endpoint is
configured. It reads the best candidate (GetBestMetrics under the run's
priorities), diagnoses it from its metrics, and proposes edits a practitioner
would try, each explained in the rationale:

- over the Env's latency or memory budget, or a ``<=`` constraint on params,
  MACs, latency or memory -> fewer channels, fewer blocks, depthwise-separable /
  mbconv blocks, earlier downsampling;
- weakest group's accuracy well below the overall accuracy -> more capacity
  (wider, deeper), normalization where there is none, regularization (dropout);
- overfitting (train accuracy well above validation accuracy) -> dropout;
- underfitting (low train accuracy) -> wider / deeper, less dropout;
- otherwise small refinements (squeeze-and-excitation, kernel size).

The first iteration (nothing measured yet) proposes ``default_spec()`` and
rule-based variants of it (in super-network runs: the smallest sub-network). Determinism: the output depends only on the
context; when every rule's edit is already in the run, a seeded random edit
(``nas_core.space.mutate`` with ``random.Random(f"{seed}:{iteration}")``) is used.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from nas_core.designers.base import DesignContext
from nas_core.designers.validation import spec_problems, supernet_spec
from nas_core.records import Metrics, Proposal
from nas_core.selection import best_candidate
from nas_core.space import ArchSpec, BlockSpec, Choices, default_spec, mutate, normalize

#: A group this far below the overall accuracy is "weak" (absolute accuracy).
GROUP_GAP = 0.05
#: Train accuracy this far above validation accuracy is overfitting.
OVERFIT_GAP = 0.10
#: Train accuracy below this is underfitting.
UNDERFIT_ACC = 0.70

Edit = Callable[[ArchSpec, Choices], tuple[ArchSpec, str] | None]


def _step(value, allowed: tuple, up: bool):
    """The next allowed value above (or below) ``value``; None at the end of the range."""
    ordered = sorted(allowed)
    if up:
        bigger = [v for v in ordered if v > value]
        return bigger[0] if bigger else None
    smaller = [v for v in ordered if v < value]
    return smaller[-1] if smaller else None


def _set_block(spec: ArchSpec, i: int, **changes) -> ArchSpec:
    blocks = list(spec.blocks)
    blocks[i] = dataclasses.replace(blocks[i], **changes)
    return normalize(dataclasses.replace(spec, blocks=tuple(blocks)))


def widen(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Widen the last block that can grow (capacity where features are most abstract)."""
    for i in reversed(range(len(spec.blocks))):
        b = spec.blocks[i]
        new = _step(b.out_channels, ch.out_channels, up=True)
        if new is not None:
            return _set_block(spec, i, out_channels=new), f"widen block {i} from {b.out_channels} to {new} channels"
    return None


def deepen(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Append a copy of the last block at stride 1 without pooling."""
    if len(spec.blocks) >= ch.max_blocks or not spec.blocks:
        return None
    last = spec.blocks[-1]
    new = dataclasses.replace(last, stride=min(ch.stride), pool="none" if "none" in ch.pool else last.pool)
    spec2 = normalize(dataclasses.replace(spec, blocks=spec.blocks + (new,)))
    return spec2, f"add a block after block {len(spec.blocks) - 1} (a copy at stride 1 without pooling)"


def add_norm(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Batch normalization where a block has none."""
    target = "batch" if "batch" in ch.norm else next((n for n in ch.norm if n != "none"), None)
    if target is None:
        return None
    for i, b in enumerate(spec.blocks):
        if b.norm == "none":
            return _set_block(spec, i, norm=target), f"add {target} normalization to block {i}"
    return None


def more_dropout(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Raise the head's dropout, else the last block's."""
    new = _step(spec.head.dropout, ch.head_dropout, up=True)
    if new is not None and spec.head.dropout < 0.5:
        head = dataclasses.replace(spec.head, dropout=new)
        return normalize(dataclasses.replace(spec, head=head)), f"raise head dropout from {spec.head.dropout} to {new}"
    if spec.blocks:
        b = spec.blocks[-1]
        new = _step(b.dropout, ch.dropout, up=True)
        if new is not None:
            i = len(spec.blocks) - 1
            return _set_block(spec, i, dropout=new), f"raise block {i} dropout from {b.dropout} to {new}"
    return None


def less_dropout(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Lower the largest dropout (it slows fitting)."""
    best: tuple[float, int] = (spec.head.dropout, -1)
    for i, b in enumerate(spec.blocks):
        if b.dropout > best[0]:
            best = (b.dropout, i)
    if best[0] <= 0:
        return None
    if best[1] == -1:
        new = _step(spec.head.dropout, ch.head_dropout, up=False)
        if new is None:
            return None
        head = dataclasses.replace(spec.head, dropout=new)
        return normalize(dataclasses.replace(spec, head=head)), f"lower head dropout from {best[0]} to {new}"
    new = _step(best[0], ch.dropout, up=False)
    if new is None:
        return None
    return _set_block(spec, best[1], dropout=new), f"lower block {best[1]} dropout from {best[0]} to {new}"


def add_se(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Squeeze-and-excitation on the last block without it (cheap channel attention)."""
    if True not in ch.se:
        return None
    for i in reversed(range(len(spec.blocks))):
        if not spec.blocks[i].se:
            return _set_block(spec, i, se=True), f"add squeeze-and-excitation to block {i}"
    return None


def narrow(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Narrow the widest block."""
    order = sorted(range(len(spec.blocks)), key=lambda i: (-spec.blocks[i].out_channels, i))
    for i in order:
        b = spec.blocks[i]
        new = _step(b.out_channels, ch.out_channels, up=False)
        if new is not None:
            return _set_block(spec, i, out_channels=new), f"narrow block {i} from {b.out_channels} to {new} channels"
    return None


def shallower(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Remove the last block that neither strides nor pools (keeps the resolution schedule)."""
    if len(spec.blocks) <= ch.min_blocks:
        return None
    for i in reversed(range(len(spec.blocks))):
        b = spec.blocks[i]
        if b.stride == 1 and b.pool == "none":
            blocks = spec.blocks[:i] + spec.blocks[i + 1:]
            return normalize(dataclasses.replace(spec, blocks=blocks)), f"remove block {i}"
    i = len(spec.blocks) - 1
    return normalize(dataclasses.replace(spec, blocks=spec.blocks[:-1])), f"remove block {i}"


def depthwise(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Turn the widest plain/residual block into a depthwise-separable (or mbconv) one."""
    target = "dwsep" if "dwsep" in ch.type else ("mbconv" if "mbconv" in ch.type else None)
    if target is None:
        return None
    order = sorted(range(len(spec.blocks)), key=lambda i: (-spec.blocks[i].out_channels, i))
    for i in order:
        b = spec.blocks[i]
        if b.type in ("conv", "residual"):
            extra = {"expand": min(ch.expand)} if target == "mbconv" else {}
            return _set_block(spec, i, type=target, **extra), (
                f"make block {i} ({b.type}) a {target} block: far fewer multiply-adds for the same width"
            )
    return None


def downsample_early(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """Stride-2 stem: every later layer works on a quarter of the pixels."""
    if spec.stem.stride == 1 and 2 in ch.stem_stride:
        stem = dataclasses.replace(spec.stem, stride=2)
        return normalize(dataclasses.replace(spec, stem=stem)), "use a stride-2 stem to downsample early"
    return None


def bigger_kernel(spec: ArchSpec, ch: Choices) -> tuple[ArchSpec, str] | None:
    """A larger kernel on the first block (more context for lesion borders)."""
    for i, b in enumerate(spec.blocks):
        new = _step(b.kernel, ch.kernel, up=True)
        if new is not None:
            return _set_block(spec, i, kernel=new), f"grow block {i} kernel from {b.kernel} to {new}"
    return None


def _fit(spec: ArchSpec, ch: Choices) -> ArchSpec:
    """Move ``spec`` inside ``ch`` field by field (first allowed value) for the first iteration's seed."""
    def pick(v, allowed):
        return v if v in allowed else sorted(allowed, key=lambda a: abs(a - v) if not isinstance(a, str) else 0)[0]

    stem = dataclasses.replace(
        spec.stem,
        out_channels=pick(spec.stem.out_channels, ch.stem_out_channels),
        kernel=pick(spec.stem.kernel, ch.stem_kernel),
        stride=pick(spec.stem.stride, ch.stem_stride),
    )
    blocks = []
    for b in spec.blocks[: ch.max_blocks]:
        vals = {}
        for f in ("type", "norm", "act", "pool"):
            v = getattr(b, f)
            allowed = ch.allowed("block", f)
            vals[f] = v if v in allowed else allowed[0]
        for f in ("out_channels", "kernel", "stride", "dropout", "expand"):
            vals[f] = pick(getattr(b, f), ch.allowed("block", f))
        vals["se"] = b.se if b.se in ch.se else ch.se[0]
        blocks.append(BlockSpec(**vals))
    while len(blocks) < ch.min_blocks:
        blocks.append(blocks[-1] if blocks else _fit_first_block(ch))
    head = dataclasses.replace(
        spec.head, hidden=pick(spec.head.hidden, ch.head_hidden), dropout=pick(spec.head.dropout, ch.head_dropout)
    )
    return normalize(ArchSpec(stem=stem, blocks=tuple(blocks), head=head))


def _fit_first_block(ch: Choices) -> BlockSpec:
    return BlockSpec(**{f: ch.allowed("block", f)[0] for f in ("type", "out_channels", "kernel", "stride",
                                                                 "expand", "norm", "act", "se", "dropout", "pool")})


def _over_budget(m: Metrics, ctx: DesignContext) -> list[str]:
    """Why the measured model is too expensive for the target (empty when it fits)."""
    reasons = []
    hw = m.hardware
    if ctx.env.latency_budget_s is not None and hw.latency_image_s is not None:
        if hw.latency_image_s > ctx.env.latency_budget_s:
            reasons.append(
                f"latency {hw.latency_image_s:.6f} s/image is over the budget of {ctx.env.latency_budget_s:g} s"
            )
    if ctx.env.memory_budget_mb is not None and hw.peak_memory_mb is not None:
        if hw.peak_memory_mb > ctx.env.memory_budget_mb:
            reasons.append(f"peak memory {hw.peak_memory_mb:.1f} MB is over the budget of {ctx.env.memory_budget_mb:g} MB")
    for metric, op, bound in ctx.constraints:
        try:
            v = m.value(metric)
        except KeyError:
            continue
        if v is None:
            continue
        if (op == "<=" and v > bound) or (op == ">=" and v < bound):
            reasons.append(f"{metric} = {v:g} breaks the constraint {metric} {op} {bound:g}")
    return reasons


class HeuristicDesigner:
    """Rule-based edits of the best-so-far spec, explained; the offline default engine."""

    name = "heuristic"
    deterministic = True

    def diagnose(self, ctx: DesignContext) -> tuple[ArchSpec, list[tuple[str, list[Edit]]]]:
        """The spec to edit and, in order of priority, (finding, edits that address it)."""
        cands = [c for c in ctx.history if c.origin != "baseline"]
        best = best_candidate(cands, ctx.priorities)
        if best is None or best.metrics is None:
            seed = supernet_spec() if ctx.evaluation == "supernet" else None
            base = seed if seed is not None else _fit(default_spec(), ctx.choices)
            return base, [
                ("nothing is measured yet, so start from the default plain CNN and close variants",
                 [lambda s, c: (s, "the default spec as it is"), add_norm, widen, depthwise, deepen,
                  more_dropout, add_se]),
            ]
        m = best.metrics
        findings: list[tuple[str, list[Edit]]] = []
        budget = _over_budget(m, ctx)
        if budget:
            findings.append((f"best candidate #{best.id}: " + "; ".join(budget),
                             [depthwise, narrow, shallower, downsample_early]))
        groups = [g for g in m.fairness.groups if g.group != "unknown" and g.accuracy is not None]
        if groups:
            weakest = min(groups, key=lambda g: (g.accuracy, g.attribute, g.group))
            gap = m.test_acc - weakest.accuracy
            if gap > GROUP_GAP:
                findings.append((
                    f"best candidate #{best.id}: the weakest group {weakest.attribute}={weakest.group} has accuracy "
                    f"{weakest.accuracy:.3f} vs {m.test_acc:.3f} overall (gap {gap:.3f} > {GROUP_GAP})",
                    [widen, add_norm, more_dropout, deepen, add_se],
                ))
        if m.train_acc is not None and m.val_acc is not None and m.train_acc - m.val_acc > OVERFIT_GAP:
            findings.append((
                f"best candidate #{best.id} overfits: train accuracy {m.train_acc:.3f} vs validation {m.val_acc:.3f}",
                [more_dropout, add_norm],
            ))
        elif m.train_acc is not None and m.train_acc < UNDERFIT_ACC:
            findings.append((
                f"best candidate #{best.id} underfits: train accuracy {m.train_acc:.3f} < {UNDERFIT_ACC}",
                [widen, deepen, less_dropout],
            ))
        findings.append((f"best candidate #{best.id} has no glaring problem; try refinements",
                         [add_se, bigger_kernel, widen, depthwise, deepen, narrow]))
        return best.spec, findings

    def propose(self, ctx: DesignContext) -> list[Proposal]:
        """Up to ``ctx.n`` edited specs, each with the finding and the edit in its rationale."""
        base, findings = self.diagnose(ctx)
        known = set(ctx.known_keys)
        out: list[Proposal] = []
        for finding, edits in findings:
            for edit in edits:
                if len(out) >= ctx.n:
                    return out
                result = edit(base, ctx.choices)
                if result is None:
                    continue
                spec, what = result
                if spec.key in known or spec_problems(spec, ctx):
                    continue
                known.add(spec.key)
                out.append(Proposal(spec=spec, origin=self.name, rationale=f"{finding}: {what}."))
        # Every rule's edit is already in the run: explore with seeded random edits.
        rng = random.Random(f"heuristic:{ctx.seed}:{ctx.iteration}")
        for _ in range(200 * ctx.n):
            if len(out) >= ctx.n:
                break
            spec = mutate(base, ctx.choices, rng, n_edits=rng.choice((1, 2)))
            if ctx.evaluation == "supernet" and spec_problems(spec, ctx):
                # Edits rarely stay inside the super-network's stages; sample a sub-network instead.
                spec = supernet_spec(rng) or spec
            if spec.key in known or spec_problems(spec, ctx):
                continue
            known.add(spec.key)
            out.append(Proposal(spec=spec, origin=self.name,
                                rationale="every rule-based edit of the best spec was already tried; "
                                          "a seeded random edit explores nearby instead."))
        return out
