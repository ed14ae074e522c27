"""Turning an LLM's answer text into an architecture spec: size cap, tolerant JSON extraction, validation.

Owns :func:`extract_json_object` (the first JSON object in a text: the whole
text, a fenced code block, or an object embedded in prose) and
:func:`parse_answer` (``{"architecture": spec, "rationale": text}`` -> spec +
rationale) and :func:`parse_answers` (several proposals in one answer). The answer is only ever read with :mod:`json`; code in it is text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas_core.designers.llm.schema import LIST_KEY, SUBNET_KEY, subnet_to_spec
from nas_core.errors import UserError
from nas_core.space import ArchSpec, SpecError
from nas_core.supernet.space import SubnetError, SupernetSpaceConfig

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
            except (json.JSONDecodeError, RecursionError):  # nesting past the parser's limit is not JSON for us
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
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj
    raise AnswerError(
        [
            "your answer contains no valid JSON object. Answer with exactly one JSON object "
            '{"architecture": {...}, "rationale": "..."} and no code'
        ]
    )


def _extract(text: str, limit: int) -> dict[str, Any]:
    capped, truncated = cap_answer(text, limit)
    try:
        return extract_json_object(capped)
    except AnswerError as exc:
        if truncated:
            raise AnswerError(
                [f"your answer was {len(text):,} characters long; the limit is {limit:,}. "
                 "Answer with one short JSON object only"] + exc.errors
            ) from exc
        raise


def parse_answers(
    text: str, limit: int = MAX_ANSWER_CHARS, supernet_space: SupernetSpaceConfig | None = None
) -> list[ParsedAnswer | AnswerError]:
    """Every proposal in an answer, in order: each a :class:`ParsedAnswer` or the :class:`AnswerError` of it.

    Accepts ``{"proposals": [proposal, ...]}`` (also ``"architectures"``) and a single proposal;
    see :func:`parse_answer` for the shapes of one proposal.

    Raises:
        AnswerError: the answer holds no JSON object at all.
    """
    obj = _extract(text, limit)
    truncated = len(text) > limit
    for key in (LIST_KEY, "architectures"):
        items = obj.get(key)
        if isinstance(items, list):
            if not items:
                return [AnswerError([f'"{key}" is an empty list; give the proposals asked for'])]
            return [_parse_one(item, truncated, supernet_space) for item in items[:32]]
    return [_parse_one(obj, truncated, supernet_space)]


def parse_answer(text: str, limit: int = MAX_ANSWER_CHARS,
                 supernet_space: SupernetSpaceConfig | None = None) -> ParsedAnswer:
    """Read the architecture and rationale from an answer (the first proposal if it holds several).

    Accepts ``{"architecture": spec, "rationale": ...}``, and, tolerantly, a bare
    spec object (one with ``blocks``) or the spec under ``"arch"``/``"spec"``; in
    super-network runs (``supernet_space`` given) also ``{"subnetwork": ..., "rationale": ...}``
    in the shape of :func:`nas_core.designers.llm.schema.subnet_schema`.

    Raises:
        AnswerError: no JSON object, no architecture in it, or a spec of the wrong shape.
    """
    first = parse_answers(text, limit, supernet_space)[0]
    if isinstance(first, AnswerError):
        raise first
    return first


def _parse_one(obj: Any, truncated: bool,
               supernet_space: SupernetSpaceConfig | None) -> ParsedAnswer | AnswerError:
    if not isinstance(obj, Mapping):
        return AnswerError([f"each proposal must be a JSON object, got {type(obj).__name__}"])
    rationale = obj.get("rationale", "")
    if not isinstance(rationale, str):
        rationale = json.dumps(rationale)[:2000]
    rationale = rationale.strip()[:4000]
    if supernet_space is not None and SUBNET_KEY in obj:
        try:
            spec = subnet_to_spec(obj[SUBNET_KEY], supernet_space)
        except SubnetError as exc:
            return AnswerError(list(exc.errors))
        return ParsedAnswer(spec=spec, rationale=rationale, truncated=truncated)
    arch: Any = None
    for key in ("architecture", "arch", "spec"):
        if key in obj:
            arch = obj[key]
            break
    if arch is None and "blocks" in obj:
        arch = {k: v for k, v in obj.items() if k in ("stem", "blocks", "head")}
    if arch is None:
        want = SUBNET_KEY if supernet_space is not None else "architecture"
        return AnswerError(
            [f'the JSON object has no "{want}" field (fields: {sorted(obj)[:10]}); '
             f'answer {{"{want}": {{...}}, "rationale": "..."}}']
        )
    if not isinstance(arch, Mapping):
        return AnswerError([f'"architecture" must be a JSON object, got {type(arch).__name__}'])
    try:
        spec = ArchSpec.from_dict(arch)
    except SpecError as exc:
        return AnswerError(list(exc.errors))
    return ParsedAnswer(spec=spec, rationale=rationale, truncated=truncated)
