"""JSON schemas of the LLM's answer, generated from the run's Choices (or the super-network's space).

Owns :func:`arch_schema` (an :class:`~nas_core.space.ArchSpec` whose every field
can only take a value the Choices allow: ``enum`` for every categorical and
numeric field, ``minItems``/``maxItems`` for the block count),
:func:`subnet_schema` (a sub-network of the super-network in its own shape:
stem width, then per stage a width and one ``{kernel, expand}`` per block),
:func:`answer_schema` (one proposal, or an array of ``n``), and the conversion of
a schema-shaped sub-network answer into an ArchSpec (:func:`subnet_to_spec`) and
back (:func:`spec_to_subnet`).

The schemas follow OpenAI's strict structured-output rules, which are also the
common subset of vLLM/SGLang guided decoding, llama.cpp's schema-to-grammar and
Ollama's ``format``: every object lists all its properties as required and sets
``additionalProperties: false``; only ``type``, ``enum``, ``anyOf``, ``items``,
``minItems``/``maxItems``, ``properties``, ``required`` are used.

What a schema cannot say: the parameter/MAC caps and whether the feature map
stays above 1x1 at the run's resolution (both need the built network). Those are
checked after decoding (:func:`nas_core.designers.validation.spec_problems`) and
sent back to the model.

Decisions:
- ``expand`` only means something for ``mbconv`` blocks and is normalized to 1
  elsewhere; when the Choices' expand ratios are not just ``[1]``, a block is
  ``anyOf`` an mbconv variant (expand from the Choices) and a variant for the
  other types (expand ``[1]``), so every allowed instance is valid and every
  valid (normalized) spec is allowed.
- Sub-networks are asked for in the super-network's own shape, not as blocks:
  a flat block list cannot say "every block of a stage has the stage's width",
  while the stage shape makes every decoded answer a sub-network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nas_core.space import BLOCK_FIELDS, BLOCK_TYPES, HEAD_FIELDS, STEM_FIELDS, ArchSpec, Choices
from nas_core.supernet.space import (
    SubnetConfig,
    SubnetError,
    SupernetSpaceConfig,
    spec_to_config,
    to_arch_spec,
)

#: Answer key of a sub-network in super-network runs (``"architecture"`` holds an ArchSpec).
SUBNET_KEY = "subnetwork"
#: Answer key of the list when several proposals are asked for in one call.
LIST_KEY = "proposals"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def enum_of(values: Sequence[Any]) -> dict[str, Any]:
    """``{"type": ..., "enum": [...]}`` of a non-empty list of values of one kind."""
    vals = list(dict.fromkeys(values))
    return {"type": _json_type(vals[0]), "enum": vals}


def _obj(props: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": dict(props), "required": list(props), "additionalProperties": False}


def _block_schema(choices: Choices, types: Sequence[str], expand: Sequence[int]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name in BLOCK_FIELDS:
        if name == "type":
            props[name] = enum_of(types)
        elif name == "expand":
            props[name] = enum_of(expand)
        else:
            props[name] = enum_of(choices.allowed("block", name))
    return _obj(props)


def arch_schema(choices: Choices) -> dict[str, Any]:
    """Schema of an ArchSpec under ``choices``: exactly the specs :func:`~nas_core.space.validate` accepts.

    (Up to the caps and the resolution check, which need the built network.)
    """
    stem = _obj({n: enum_of(choices.allowed("stem", n)) for n in STEM_FIELDS})
    head = _obj({n: enum_of(choices.allowed("head", n)) for n in HEAD_FIELDS})
    types = [t for t in BLOCK_TYPES if t in choices.type] or list(choices.type)
    others = [t for t in types if t != "mbconv"]
    if "mbconv" not in types:
        block = _block_schema(choices, types, [1])
    elif not others:
        block = _block_schema(choices, types, choices.expand)
    elif tuple(choices.expand) == (1,):
        block = _block_schema(choices, types, [1])
    else:
        block = {"anyOf": [_block_schema(choices, ["mbconv"], choices.expand), _block_schema(choices, others, [1])]}
    blocks = {"type": "array", "items": block, "minItems": choices.min_blocks, "maxItems": choices.max_blocks}
    return _obj({"stem": stem, "blocks": blocks, "head": head})


def _stage_name(s: int) -> str:
    return f"stage{s + 1}"


def subnet_schema(space: SupernetSpaceConfig) -> dict[str, Any]:
    """Schema of a sub-network of ``space`` (a :class:`~nas_core.supernet.space.SupernetSpaceConfig`).

    Shape: ``{"stem_width": w, "stage1": {"width": w, "blocks": [{"kernel": k, "expand": e}, ...]}, ...}``;
    the number of blocks of a stage is its depth.
    """
    block = _obj({"kernel": enum_of(space.kernels), "expand": enum_of(space.expands)})
    props: dict[str, Any] = {"stem_width": enum_of(space.stem_widths)}
    for s, stage in enumerate(space.stages):
        depths = sorted(stage.depths)
        if depths == list(range(depths[0], depths[-1] + 1)):
            blocks: dict[str, Any] = {"type": "array", "items": block, "minItems": depths[0], "maxItems": depths[-1]}
        else:  # depths with gaps (e.g. 1 or 3): one exact length per allowed depth
            blocks = {"anyOf": [{"type": "array", "items": block, "minItems": d, "maxItems": d} for d in depths]}
        props[_stage_name(s)] = _obj({"width": enum_of(stage.widths), "blocks": blocks})
    return _obj(props)


def proposal_schema(choices: Choices, supernet_space: SupernetSpaceConfig | None = None) -> dict[str, Any]:
    """One proposal: ``{"architecture": spec, "rationale": text}`` (``"subnetwork"`` in super-network runs)."""
    if supernet_space is not None:
        return _obj({SUBNET_KEY: subnet_schema(supernet_space), "rationale": {"type": "string"}})
    return _obj({"architecture": arch_schema(choices), "rationale": {"type": "string"}})


def answer_schema(choices: Choices | None = None, n: int = 1,
                  supernet_space: SupernetSpaceConfig | None = None) -> dict[str, Any]:
    """The schema sent to the endpoint: one proposal, or ``{"proposals": [exactly n proposals]}``.

    Args:
        choices: the run's Choices (default: the shipped ones).
        n: proposals wanted from this call.
        supernet_space: in super-network runs, the super-network's space; answers are sub-networks.
    """
    one = proposal_schema(choices or Choices.default(), supernet_space)
    if n <= 1:
        return one
    return _obj({LIST_KEY: {"type": "array", "items": one, "minItems": n, "maxItems": n}})


def subnet_to_spec(data: Mapping[str, Any], space: SupernetSpaceConfig) -> ArchSpec:
    """The ArchSpec of a schema-shaped sub-network answer.

    Raises:
        nas_core.supernet.space.SubnetError: a missing or malformed field, or a value outside ``space``
            (every problem named).
    """
    if not isinstance(data, Mapping):
        raise SubnetError([f"{SUBNET_KEY} must be a JSON object, got {type(data).__name__}"])
    names = ["stem_width"] + [_stage_name(s) for s in range(len(space.stages))]
    unknown, missing = set(data) - set(names), [n for n in names if n not in data]
    if unknown or missing:
        raise SubnetError([f"{SUBNET_KEY}: unknown field(s) {sorted(unknown)}, missing {missing}; "
                           f"the fields are {', '.join(names)}"])
    errors: list[str] = []
    widths, kernels, expands = [], [], []
    for s in range(len(space.stages)):
        name = _stage_name(s)
        stage = data[name]
        if not isinstance(stage, Mapping) or not isinstance(stage.get("blocks"), list) or "width" not in stage:
            errors.append(f'{name} must be {{"width": int, "blocks": [{{"kernel": int, "expand": int}}, ...]}}')
            continue
        blocks = stage["blocks"]
        if not all(isinstance(b, Mapping) and "kernel" in b and "expand" in b for b in blocks):
            errors.append(f'{name}.blocks: every block is {{"kernel": int, "expand": int}}')
            continue
        widths.append(stage["width"])
        kernels.append([b["kernel"] for b in blocks])
        expands.append([b["expand"] for b in blocks])
    if errors:
        raise SubnetError(errors)
    config = SubnetConfig.from_dict({
        "stem_width": data["stem_width"], "depths": [len(k) for k in kernels], "widths": widths,
        "kernels": kernels, "expands": expands,
    })
    try:
        return to_arch_spec(config, space)
    except SubnetError as exc:  # say it in the answer's own terms (stage1, not index 0)
        raise SubnetError([_stage_terms(e) for e in exc.errors]) from exc


def _stage_terms(error: str) -> str:
    import re

    def sub(m: re.Match[str]) -> str:
        name, s, rest = m.group(1), int(m.group(2)), m.group(3) or ""
        if name == "depths":
            return f"{_stage_name(s)}: number of blocks"
        if name == "widths":
            return f"{_stage_name(s)}.width"
        field = name[:-1]  # kernels -> kernel
        return f"{_stage_name(s)}.blocks{rest}.{field}" if rest else f"{_stage_name(s)}.blocks ({field}s)"

    return re.sub(r"\b(depths|widths|kernels|expands)\[(\d+)\](\[\d+\])?", sub, error)


def spec_to_subnet(spec: ArchSpec, space: SupernetSpaceConfig) -> dict[str, Any]:
    """The schema-shaped sub-network of a sub-network spec (inverse of :func:`subnet_to_spec`).

    Raises:
        nas_core.supernet.space.SubnetError: the spec is not a sub-network of ``space``.
    """
    config = spec_to_config(spec, space)
    out: dict[str, Any] = {"stem_width": config.stem_width}
    for s in range(len(space.stages)):
        out[_stage_name(s)] = {
            "width": config.widths[s],
            "blocks": [{"kernel": k, "expand": e} for k, e in zip(config.kernels[s], config.expands[s])],
        }
    return out


def subnet_format_text(space: SupernetSpaceConfig) -> str:
    """How a sub-network answer looks, for the prompt of super-network runs (no schema needed to read it)."""
    lines = [
        f'In this run every design is a sub-network of a trained super-network. Give it as "{SUBNET_KEY}" '
        "(instead of \"architecture\"):",
        '{"stem_width": int, "stage1": {"width": int, "blocks": [{"kernel": int, "expand": int}, ...]}, ...}',
        "The number of blocks of a stage is its depth; every block is an MBConv block.",
        f"stem_width: {list(space.stem_widths)}; kernel: {list(space.kernels)}; expand: {list(space.expands)}",
    ]
    for s, stage in enumerate(space.stages):
        lines.append(
            f"{_stage_name(s)}: width {list(stage.widths)}, {min(stage.depths)}-{max(stage.depths)} blocks"
            + ("" if list(stage.depths) == list(range(min(stage.depths), max(stage.depths) + 1))
               else f" (exactly one of {list(stage.depths)})")
            + f", stride {stage.stride}, act {stage.act}{', SE' if stage.se else ''}"
        )
    return "\n".join(lines)


def supernet_space_of(ctx: Any) -> Any:
    """The super-network space of a super-network run's design context; None in other runs.

    The same space :func:`nas_core.designers.validation.supernet_problems` checks against.
    """
    if getattr(ctx, "evaluation", "scratch") != "supernet":
        return None
    return SupernetSpaceConfig()
