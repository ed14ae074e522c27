"""The FL-NAS prompt: three editable parts with named placeholders, rendered from a design context.

Owns :class:`PromptParts` (PromptApp, PromptTask, PromptConst of FL-NAS Algorithm 2,
each a text the user may edit), the placeholder vocabulary (:data:`PLACEHOLDERS`),
the check that reports unknown placeholders before anything is sent
(:func:`check_parts`), the context that fills them (:func:`build_context`) and
:func:`render`, which returns the exact text the LLM will see.

Placeholder syntax: ``{name}`` where name is one of :data:`PLACEHOLDERS`. Any other
brace text that is not a bare identifier (a JSON example such as ``{"a": 1}``)
stays literal; ``{{name}}`` writes a literal ``{name}``.

The answer format (one JSON object ``{"architecture": ..., "rationale": ...}``)
is appended to the user message as a fixed footer so an edited prompt can never
lose it; it is part of the rendered text the user sees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas_core.designers.base import DesignContext
from nas_core.designers.llm.schema import SUBNET_KEY, subnet_format_text, supernet_space_of
from nas_core.errors import UserError
from nas_core.records import Candidate
from nas_core.selection import Priorities, best_candidate
from nas_core.space import ArchSpec, default_spec
from nas_core.supernet.space import SupernetSpaceConfig

#: Placeholder name -> what it is replaced with (shown in the UI next to the editor).
PLACEHOLDERS: dict[str, str] = {
    "template": "the Template: the JSON shape of an architecture and what each field means",
    "choices": "the Choices: allowed values of every field, block-count range, parameter/MAC caps",
    "env": "the deployment target (device, threads, batch size, budgets)",
    "best_spec": "the best-so-far architecture as JSON (by the priorities)",
    "best_metrics": "its metrics in the paper's text form (Metrics.to_text())",
    "priorities": "the metric priorities in words",
    "history": "the last K candidates with their metrics or status",
    "feedback": "the human's feedback: rejection reasons and notes",
    "dataset": "a summary of the data set (classes, groups, sizes)",
}

DEFAULT_APP = "You are an expert in the field of neural architecture search."

DEFAULT_TASK = (
    "You need to follow the format in Template to generate a DNN architecture.\n"
    "Template:\n{template}"
)

DEFAULT_CONST = (
    "Your task is to design a DNN architecture to process the images of this data set for an image "
    "classification task: {dataset}\n"
    "The current best-performing DNN architecture is:\n{best_spec}\n"
    "and its evaluation is: {best_metrics}\n\n"
    "Your designed DNN will be deployed into this environment: {env}, so you need to make sure you "
    "consider the limitations in this running environment.\n\n"
    "In evaluation, the metrics are accuracy, fairness, and hardware efficiency. You need to improve the "
    "fairness without decreasing the accuracy. Also notice the accuracy in each demographic group and the "
    "overall accuracy. Try to design a DNN to improve the lowest accuracy in certain demographic groups.\n\n"
    "Regarding the hardware efficiency metrics, which are number of parameters, latency, and memory, you "
    "should try to minimize them so the DNN can run with less resources. But the priority of optimizing "
    "hardware efficiency is lower than maintaining high accuracy, which is also lower than improving "
    "fairness.\n{priorities}\n\n"
    "Architectures tried so far (do not propose any of them again):\n{history}\n\n"
    "Feedback from the human reviewer:\n{feedback}\n\n"
    "You can insert or remove convolutional layers, use different normalization methods, regularization "
    "methods, and try different sizes of kernel. The available range is Choices:\n{choices}"
)

ANSWER_FORMAT = (
    "Answer with exactly one JSON object and nothing else: "
    '{"architecture": <an architecture in the Template\'s JSON shape>, '
    '"rationale": "<why this design should do better, in a few sentences>"}'
)


def answer_format(n: int = 1, supernet_space: SupernetSpaceConfig | None = None, describe: bool = True) -> str:
    """The fixed footer: one proposal (:data:`ANSWER_FORMAT`) or ``n`` of them; in super-network runs
    with the sub-network shape (described in full unless ``describe`` is False)."""
    key = "architecture" if supernet_space is None else SUBNET_KEY
    shape = "an architecture in the Template's JSON shape" if supernet_space is None else "a sub-network"
    one = f'{{"{key}": <{shape}>, "rationale": "<why this design should do better, in a few sentences>"}}'
    if n <= 1:
        text = ANSWER_FORMAT if supernet_space is None else (
            f"Answer with exactly one JSON object and nothing else: {one}")
    else:
        text = (f'Answer with exactly one JSON object and nothing else: {{"proposals": [...]}} holding {n} '
                f"different designs, each {one}")
    if supernet_space is not None and describe:
        text = subnet_format_text(supernet_space) + "\n" + text
    return text

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PromptError(UserError, ValueError):
    """A prompt part uses a placeholder that does not exist (or is otherwise unusable)."""


@dataclass(frozen=True)
class PromptParts:
    """The three editable parts of FL-NAS Algorithm 2."""

    app: str = DEFAULT_APP  # PromptApp: the role; sent as the system message
    task: str = DEFAULT_TASK  # PromptTask: follow the Template
    const: str = DEFAULT_CONST  # PromptConst: the constraints, the best-so-far design and its metrics

    def to_dict(self) -> dict[str, str]:
        """Plain dict."""
        return {"app": self.app, "task": self.task, "const": self.const}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PromptParts:
        """Inverse of :meth:`to_dict`; missing parts keep the defaults.

        Raises:
            PromptError: unknown part names, non-text parts or unknown placeholders.
        """
        data = dict(data or {})
        unknown = set(data) - {"app", "task", "const"}
        if unknown:
            raise PromptError(f"prompt: unknown part(s) {sorted(unknown)}; the parts are app, task, const")
        for k, v in data.items():
            if not isinstance(v, str):
                raise PromptError(f"prompt part {k!r} must be text, got {type(v).__name__}")
        parts = cls(**data)
        check_parts(parts)
        return parts


@dataclass(frozen=True)
class PromptContext:
    """The text that fills each placeholder (every value already rendered)."""

    template: str
    choices: str
    env: str
    best_spec: str
    best_metrics: str
    priorities: str
    history: str
    feedback: str
    dataset: str
    best_id: int | None = None  # candidate id of the best-so-far design, if any
    answer_format: str = ANSWER_FORMAT  # the fixed footer (see answer_format())

    def values(self) -> dict[str, str]:
        """Placeholder name -> text."""
        return {name: getattr(self, name) for name in PLACEHOLDERS}


@dataclass(frozen=True)
class RenderedPrompt:
    """Exactly what is sent: a system message and a user message."""

    system: str
    user: str

    @property
    def text(self) -> str:
        """Both messages as one text (what the user reviews and what the store keeps)."""
        return f"[system]\n{self.system}\n\n[user]\n{self.user}"

    def messages(self) -> list[dict[str, str]]:
        """OpenAI chat messages."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def placeholders_in(text: str) -> list[str]:
    """Placeholder names used in ``text``, in order of first use."""
    seen: list[str] = []
    for m in _PLACEHOLDER.finditer(text):
        name = m.group(1)
        if name and name not in seen:
            seen.append(name)
    return seen


def check_parts(parts: PromptParts) -> None:
    """Raise when any part names a placeholder that does not exist.

    Raises:
        PromptError: listing every unknown placeholder (with its part) and the known ones.
    """
    bad = []
    for part in ("app", "task", "const"):
        for name in placeholders_in(getattr(parts, part)):
            if name not in PLACEHOLDERS:
                bad.append(f"{{{name}}} in Prompt{part.capitalize()}")
    if bad:
        known = ", ".join(f"{{{n}}}" for n in PLACEHOLDERS)
        raise PromptError(
            f"unknown placeholder(s): {', '.join(bad)}. Known placeholders: {known}. "
            "Fix the spelling, or write {{name}} for a literal brace."
        )


def _fill(text: str, values: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        return values[m.group(1)]

    return _PLACEHOLDER.sub(sub, text)


def render(parts: PromptParts, ctx: PromptContext) -> RenderedPrompt:
    """Fill the three parts: PromptApp becomes the system message, PromptTask + PromptConst the user one.

    Raises:
        PromptError: before anything is sent, when a part names an unknown placeholder.
    """
    check_parts(parts)
    values = ctx.values()
    system = _fill(parts.app, values).strip()
    user = _fill(parts.task, values).strip() + "\n\n" + _fill(parts.const, values).strip()
    return RenderedPrompt(system=system, user=user + "\n\n" + ctx.answer_format)


TEMPLATE_TEXT = (
    "An architecture is a JSON object:\n"
    '{"stem": {"out_channels": int, "kernel": int, "stride": int},\n'
    ' "blocks": [{"type": "conv|residual|mbconv|dwsep", "out_channels": int, "kernel": int, "stride": int,\n'
    '             "expand": int, "norm": str, "act": str, "se": bool, "dropout": float, "pool": str}, ...],\n'
    ' "head": {"hidden": int, "dropout": float}}\n'
    "stem: the first convolution. blocks: applied in order; conv = conv-norm-act, residual = two convs with a "
    "skip connection, mbconv = inverted bottleneck (expand = expansion ratio, only used by mbconv), dwsep = "
    "depthwise-separable conv; stride 2 or a 2x2 pool ('max'/'avg') halves the feature map; se = "
    "squeeze-and-excitation; dropout = channel dropout after the block. head: global average pooling, an "
    "optional hidden layer (0 = none), dropout, then the classifier.\n"
    "Example:\n"
)


def template_text() -> str:
    """The {template} text: the JSON shape, field meanings and one valid example."""
    return TEMPLATE_TEXT + default_spec().to_json()


def choices_text(ctx: DesignContext) -> str:
    """The {choices} text."""
    ch = ctx.choices
    lines = [
        f"number of blocks: {ch.min_blocks} to {ch.max_blocks}",
        f"stem.out_channels: {list(ch.stem_out_channels)}",
        f"stem.kernel: {list(ch.stem_kernel)}",
        f"stem.stride: {list(ch.stem_stride)}",
    ]
    for name in ("type", "out_channels", "kernel", "stride", "expand", "norm", "act", "se", "dropout", "pool"):
        lines.append(f"blocks[].{name}: {json.dumps(list(ch.allowed('block', name)))}")
    lines.append(f"head.hidden: {list(ch.head_hidden)}")
    lines.append(f"head.dropout: {list(ch.head_dropout)}")
    c, h, w = ctx.input_shape
    lines.append(f"input images: {c} channels, {h}x{w} px; {ctx.n_classes} classes")
    if ch.max_params is not None:
        lines.append(f"at most {ch.max_params:,} parameters")
    if ch.max_macs is not None:
        lines.append(f"at most {ch.max_macs:,} multiply-accumulates per image")
    return "\n".join(lines)


def _short_metrics(c: Candidate) -> str:
    m = c.metrics
    if m is None:
        return c.status + (f" ({c.error})" if c.error else "")
    fr, hw = m.fairness, m.hardware

    def f(v: float | None, d: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    wg = fr.worst_group_accuracy
    return (
        f"test acc {f(m.test_acc)}, worst group acc {f(wg)}, unfairness {f(fr.unfairness)}, "
        f"EODD {f(fr.eodd)}, params {hw.params:,}"
        + ("" if hw.latency_image_s is None else f", latency {hw.latency_image_s:.6f} s/image")
        + (" [estimate]" if m.estimate else "")
    )


def history_text(history: Sequence[Candidate], k: int) -> str:
    """The {history} text: the last ``k`` candidates (newest last) with metrics or status."""
    cands = [c for c in history if c.origin != "baseline"][-k:] if k > 0 else []
    if not cands:
        return "none yet"
    return "\n".join(
        f"- #{c.id} ({c.origin}, {c.status}): {json.dumps(c.spec.to_dict(), separators=(',', ':'))} -> "
        f"{_short_metrics(c)}"
        for c in cands
    )


def build_context(ctx: DesignContext, history_k: int = 5, priorities: Priorities | None = None) -> PromptContext:
    """Fill every placeholder from a design context (GetBestMetrics picks the best-so-far design)."""
    priorities = priorities or ctx.priorities
    best = best_candidate([c for c in ctx.history if c.origin != "baseline"], priorities)
    if best is not None and best.metrics is not None:
        best_spec = best.spec.to_json(indent=1)
        best_metrics = best.metrics.to_text()
    else:
        best_spec = "none yet; this is the first design. Start from the Template's example:\n" + default_spec().to_json()
        best_metrics = "not measured yet"
    feedback = "\n".join(f"- {t}" for t in ctx.feedback) if ctx.feedback else "none"
    return PromptContext(
        template=template_text(),
        choices=choices_text(ctx),
        env=ctx.env.describe(),
        best_spec=best_spec,
        best_metrics=best_metrics,
        priorities=priorities.describe(),
        history=history_text(ctx.history, history_k),
        feedback=feedback,
        dataset=ctx.dataset_summary or "an image data set with demographic metadata",
        best_id=None if best is None else best.id,
        answer_format=answer_format(ctx.n, supernet_space_of(ctx)),
    )


def render_for(ctx: DesignContext, parts: PromptParts | None = None, history_k: int = 5) -> RenderedPrompt:
    """Render the next prompt for ``ctx`` (what the LLM designer would send now)."""
    return render(parts or PromptParts(), build_context(ctx, history_k))


def spec_from_best(ctx: DesignContext) -> ArchSpec:
    """The best-so-far spec by the context's priorities, or the default spec."""
    best = best_candidate(ctx.history, ctx.priorities)
    return best.spec if best is not None else default_spec()
