"""Turning an LLM's answer text into an architecture spec: size cap, tolerant JSON extraction, validation.

Owns :func:`extract_json_object` (the first JSON object in a text: the whole
text, a fenced code block, or an object embedded in prose) and
:func:`parse_answer` (``{"architecture": spec, "rationale": text}`` -> spec +
rationale). The answer is only ever read with :mod:`json`; code in it is text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas_core.errors import UserError
from nas_core.space import ArchSpec, SpecError

#: Longest answer (characters) that is parsed; the rest is cut off before parsing.
MAX_ANSWER_CHARS = 64 * 1024
# Scanning every "{" of a hostile text is quadratic; this bounds the work.
_MAX_DECODE_TRIES = 200
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n(.*?)```", re.DOTALL)


class AnswerError(UserError, ValueError):
    """The LLM's answer holds no usable architecture; ``errors`` are fed back to it."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class ParsedAnswer:
    """A spec read from an answer (not yet validated against the Choices)."""

    spec: ArchSpec
    rationale: str
    truncated: bool = False  # the answer was longer than the cap and was cut


def cap_answer(text: str, limit: int = MAX_ANSWER_CHARS) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``.

    Tries, in order: the whole text; each fenced code block; every ``{`` in the
    text with a raw JSON decode (first success wins).

    Raises:
        AnswerError: when no JSON object is found.
    """
    stripped = text.strip()
    candidates = [stripped] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    for chunk in candidates:
        if chunk.startswith("{"):
            try:
                obj = json.loads(chunk)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    decoder = json.JSONDecoder()
    tries = 0
    for m in re.finditer(r"\{", text):
        tries += 1
        if tries > _MAX_DECODE_TRIES:
            break
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise AnswerError(
        [
            "your answer contains no valid JSON object. Answer with exactly one JSON object "
            '{"architecture": {...}, "rationale": "..."} and no code'
        ]
    )


def parse_answer(text: str, limit: int = MAX_ANSWER_CHARS) -> ParsedAnswer:
    """Read the architecture and rationale from an answer.

    Accepts ``{"architecture": spec, "rationale": ...}``, and, tolerantly, a bare
    spec object (one with ``blocks``) or the spec under ``"arch"``/``"spec"``.

    Raises:
        AnswerError: no JSON object, no architecture in it, or a spec of the wrong shape.
    """
    capped, truncated = cap_answer(text, limit)
    try:
        obj = extract_json_object(capped)
    except AnswerError as exc:
        if truncated:
            raise AnswerError(
                [f"your answer was {len(text):,} characters long; the limit is {limit:,}. "
                 "Answer with one short JSON object only"] + exc.errors
            ) from exc
        raise
    arch: Any = None
    for key in ("architecture", "arch", "spec"):
        if key in obj:
            arch = obj[key]
            break
    if arch is None and "blocks" in obj:
        arch = {k: v for k, v in obj.items() if k in ("stem", "blocks", "head")}
    if arch is None:
        raise AnswerError(
            [f'the JSON object has no "architecture" field (fields: {sorted(obj)[:10]}); '
             'answer {"architecture": {...}, "rationale": "..."}']
        )
    if not isinstance(arch, Mapping):
        raise AnswerError([f'"architecture" must be a JSON object, got {type(arch).__name__}'])
    try:
        spec = ArchSpec.from_dict(arch)
    except SpecError as exc:
        raise AnswerError(list(exc.errors)) from exc
    rationale = obj.get("rationale", "")
    if not isinstance(rationale, str):
        rationale = json.dumps(rationale)[:2000]
    return ParsedAnswer(spec=spec, rationale=rationale.strip()[:4000], truncated=truncated)


def answer_schema() -> dict[str, Any]:
    """JSON schema of the answer, built from the spec records, for structured outputs.

    Strict mode needs every property required and no extra properties, which the
    spec records satisfy (every field has a value).
    """
    from nas_core.space import BLOCK_FIELDS, HEAD_FIELDS, STEM_FIELDS, BlockSpec, HeadSpec, StemSpec

    def props(kind: type, names: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        inst = kind()
        for n in names:
            v = getattr(inst, n)
            if isinstance(v, bool):
                out[n] = {"type": "boolean"}
            elif isinstance(v, int):
                out[n] = {"type": "integer"}
            elif isinstance(v, float):
                out[n] = {"type": "number"}
            else:
                out[n] = {"type": "string"}
        return {"type": "object", "properties": out, "required": list(names), "additionalProperties": False}

    arch = {
        "type": "object",
        "properties": {
            "stem": props(StemSpec, STEM_FIELDS),
            "blocks": {"type": "array", "items": props(BlockSpec, BLOCK_FIELDS)},
            "head": props(HeadSpec, HEAD_FIELDS),
        },
        "required": ["stem", "blocks", "head"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"architecture": arch, "rationale": {"type": "string"}},
        "required": ["architecture", "rationale"],
        "additionalProperties": False,
    }
