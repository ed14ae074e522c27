"""The LLM designer (FL-NAS section III-D): prompt -> answer -> validated proposals, with follow-ups.

Owns :class:`LlmDesigner` and :class:`LlmCall` (one record per request, handed to
an ``on_call`` callback the session wires to ``store.add_llm_call``; it holds the
rendered prompt, the messages, the capped raw answer, model, token usage,
duration, the constrained-decoding rung used and any error, and never the key),
and :func:`compact_problems` (the follow-up's list of problems).

Every request carries the answer's JSON schema generated from the run's Choices
(:mod:`nas_core.designers.llm.schema`; the super-network's own space in
super-network runs), which the client applies as strongly as the endpoint allows
(:mod:`nas_core.designers.llm.client`). When ``ctx.n`` proposals are wanted, one
request asks for all of them (an array in the schema); the valid, new ones are
kept, deduplicated by canonical key against the run and each other.

An answer that is not JSON, has the wrong shape, breaks the Choices or the caps,
or repeats an architecture already in the run is sent back to the LLM with each
problem once and the allowed values of only the wrong fields, up to
``LlmSettings.max_retries`` follow-ups. HTTP failures are retried by the client
and then end the proposal with an :class:`LlmError` (proposals already made are kept).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nas_core.designers.base import DesignContext
from nas_core.designers.llm.client import LlmClient, LlmError, LlmSettings
from nas_core.designers.llm.parse import AnswerError, cap_answer, extract_json_object, parse_answers
from nas_core.designers.llm.prompt import PromptParts, answer_format, build_context, check_parts, render
from nas_core.designers.llm.schema import answer_schema, supernet_space_of
from nas_core.designers.validation import spec_problems
from nas_core.errors import UserError
from nas_core.records import Proposal

log = logging.getLogger(__name__)

# The answer echoed back in a follow-up is cut shorter than the parse cap: the LLM only needs a reminder.
_ECHO_CHARS = 8000
# A follow-up lists at most this many problem lines (then "and N more"), each at most _LINE_CHARS long.
_MAX_LINES = 12
_LINE_CHARS = 300
# Paths listed per wrong field before "and N more".
_MAX_PATHS = 4
_NOT_ALLOWED = re.compile(
    r"^(?P<label>proposal \d+: )?(?P<path>[\w\[\]\.]+) = (?P<value>.+?) is not allowed; allowed: (?P<allowed>\[.*\])$"
)


class LlmDesignError(UserError):
    """The LLM gave no valid, new architecture within the retry cap."""


@dataclass(frozen=True)
class LlmCall:
    """One request to the LLM and what came back (never the key)."""

    prompt: str  # the rendered prompt of this proposal (system + user text)
    messages: tuple[tuple[str, str], ...]  # (role, content) as sent
    raw_answer: str  # the answer, cut to LlmSettings.max_answer_chars
    model: str
    tokens_in: int | None
    tokens_out: int | None
    duration_s: float
    error: str  # "" when every design of this answer became a proposal
    attempt: int  # 0 = first request of this proposal, then follow-ups
    structured: bool = False  # decoded under the JSON schema (rung json_schema or ollama)
    decoding: str = ""  # the constrained-decoding rung used: json_schema | ollama | json_object | text
    accepted: int = 0  # proposals taken from this answer

    def messages_json(self) -> str:
        """The messages as a JSON list of {role, content}."""
        return json.dumps([{"role": r, "content": c} for r, c in self.messages])


def compact_problems(problems: Sequence[str]) -> list[str]:
    """Each problem once, as short lines; "not allowed" values grouped per field with its allowed values.

    ``blocks[0].kernel = 4 is not allowed; allowed: [3, 5, 7]`` and the same for
    ``blocks[2]`` become one line ``blocks[0].kernel = 4, blocks[2].kernel = 9 (allowed: [3, 5, 7])``;
    fields that were right are never listed.
    """
    fields: dict[str, tuple[list[str], str]] = {}
    order: list[str] = []
    for p in dict.fromkeys(problems):
        m = _NOT_ALLOWED.match(p)
        if m is None:
            order.append(p)
            continue
        label = m.group("label") or ""
        field = label + re.sub(r"\[\d+\]", "[]", m.group("path"))
        if field not in fields:
            fields[field] = ([], m.group("allowed"))
            order.append("\0" + field)
        if not fields[field][0]:
            fields[field][0].append(label)
        fields[field][0].append(f"{m.group('path')} = {m.group('value')}")
    lines = []
    for item in order:
        if item.startswith("\0"):
            (label, *wrong), allowed = fields[item[1:]]
            shown = label + ", ".join(wrong[:_MAX_PATHS]) + (f" and {len(wrong) - _MAX_PATHS} more" if len(wrong) > _MAX_PATHS
                                                       else "")
            line = f"{shown} (allowed: {allowed})"
        else:
            line = item
        lines.append(line if len(line) <= _LINE_CHARS else line[: _LINE_CHARS - 3] + "...")
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES] + [f"... and {len(lines) - _MAX_LINES} more problems"]
    return lines


def _echo(raw: str) -> str:
    """What the follow-up repeats of the answer: its JSON, compact, or the text cut short."""
    try:
        obj = extract_json_object(raw)
    except AnswerError:
        return raw[:_ECHO_CHARS]
    return json.dumps(obj, separators=(",", ":"))[:_ECHO_CHARS]


class LlmDesigner:
    """Proposes architectures by asking an LLM (FL-NAS Algorithm 1, LLMDesigner).

    Args:
        settings: endpoint, model and retry settings.
        parts: the three prompt parts (defaults: FL-NAS Algorithm 2).
        api_key: kept in memory only.
        on_call: receives an :class:`LlmCall` after every request (success or not).
        client: an already built client (tests, or to share one); built from ``settings`` otherwise.
    """

    name = "llm"
    deterministic = False

    def __init__(
        self,
        settings: LlmSettings,
        parts: PromptParts | None = None,
        api_key: str | None = None,
        on_call: Callable[[LlmCall], None] | None = None,
        client: LlmClient | None = None,
    ):
        self.settings = settings
        self.parts = parts or PromptParts()
        check_parts(self.parts)
        self.on_call = on_call
        self._client = client or LlmClient(settings, api_key=api_key)

    def _record(self, call: LlmCall) -> None:
        if self.on_call is not None:
            self.on_call(call)

    def propose(self, ctx: DesignContext) -> list[Proposal]:
        """Up to ``ctx.n`` proposals, asked for in one conversation (all ``n`` in each request).

        Raises:
            PromptError: a prompt part names an unknown placeholder (nothing is sent).
            LlmError: the endpoint failed after the HTTP retries (and nothing was proposed yet).
            LlmDesignError: no valid new architecture within the follow-up cap.
        """
        space = supernet_space_of(ctx)
        rendered = render(self.parts, build_context(ctx, self.settings.history_k))
        known = set(ctx.known_keys)
        proposals: list[Proposal] = []
        messages = rendered.messages()
        last: list[str] = []
        for attempt in range(self.settings.max_retries + 1):
            want = ctx.n - len(proposals)
            schema = answer_schema(ctx.choices, want, space)
            sent = tuple((m["role"], m["content"]) for m in messages)
            try:
                res = self._client.chat(messages, schema)
            except LlmError as exc:
                self._record(LlmCall(rendered.text, sent, "", self.settings.model, None, None, 0.0, str(exc),
                                     attempt))
                if not proposals:
                    raise
                # Keep what this round already produced; the failure is in the call log.
                log.warning("LLM failed after %d proposal(s): %s", len(proposals), exc)
                break
            raw, _ = cap_answer(res.text, self.settings.max_answer_chars)
            taken, problems = self._take(res.text, ctx, space, known, want)
            proposals += taken
            last = compact_problems(problems)
            self._record(
                LlmCall(rendered.text, sent, raw, res.model, res.tokens_in, res.tokens_out, res.duration_s,
                        "; ".join(last), attempt, res.structured, res.decoding, len(taken))
            )
            if len(proposals) >= ctx.n:
                break
            log.info("LLM answer (attempt %d, %s) gave %d of %d: %s", attempt, res.decoding, len(taken), want,
                     "; ".join(last)[:300])
            messages = list(messages) + [
                {"role": "assistant", "content": _echo(raw)},
                {"role": "user", "content": self._follow_up(last, taken, ctx.n - len(proposals), space)},
            ]
        if not proposals:
            raise LlmDesignError(
                f"the LLM gave no valid new architecture in {self.settings.max_retries + 1} tries; "
                f"last problems: {'; '.join(last)[:1500]}. Rephrase the prompt, raise the retries, "
                "or use the heuristic engine"
            )
        return proposals

    def _take(self, text, ctx, space, known, want) -> tuple[list[Proposal], list[str]]:
        """The valid, new proposals of one answer (at most ``want``) and every problem of the rest."""
        try:
            items = parse_answers(text, self.settings.max_answer_chars, space)
        except AnswerError as exc:
            return [], exc.errors
        several = len(items) > 1
        taken: list[Proposal] = []
        problems: list[str] = []
        for i, item in enumerate(items):
            if len(taken) >= want:
                break
            label = f"proposal {i + 1}: " if several else ""
            if isinstance(item, AnswerError):
                errors = item.errors
            else:
                errors = spec_problems(item.spec, ctx)
                if not errors and item.spec.key in known:
                    errors = ["this architecture was already proposed or measured in this run "
                              f"(key {item.spec.key}); propose a different one"]
            if errors:
                problems += [label + e for e in errors]
                continue
            assert not isinstance(item, AnswerError)
            taken.append(Proposal(spec=item.spec, origin=self.name, rationale=item.rationale))
            known.add(item.spec.key)
        return taken, problems

    def _follow_up(self, problems: list[str], taken: list[Proposal], missing: int, space) -> str:
        head = "Your answer cannot be used:" if not taken else (
            f"{len(taken)} of your designs are kept (do not repeat them); the others cannot be used:")
        body = "\n".join(f"- {p}" for p in problems) if problems else "- fewer designs than asked for"
        return (f"{head}\n{body}\nFix these problems and give {missing} new design(s). "
                + answer_format(missing, space, describe=False))
