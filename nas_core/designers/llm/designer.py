"""The LLM designer (FL-NAS section III-D): prompt -> answer -> validated proposal, with follow-ups.

Owns :class:`LlmDesigner` and :class:`LlmCall` (one record per request, handed to
an ``on_call`` callback the session wires to ``store.add_llm_call``; it holds the
rendered prompt, the messages, the capped raw answer, model, token usage,
duration and any error, and never the key).

An answer that is not JSON, has the wrong shape, breaks the Choices or the caps,
or repeats an architecture already in the run is sent back to the LLM with the
reasons, up to ``LlmSettings.max_retries`` follow-ups. HTTP failures are retried
by the client (see :mod:`nas_core.designers.llm.client`) and then end the
proposal with an :class:`LlmError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from nas_core.designers.base import DesignContext
from nas_core.designers.llm.client import LlmClient, LlmError, LlmSettings
from nas_core.designers.llm.parse import AnswerError, answer_schema, cap_answer, parse_answer
from nas_core.designers.llm.prompt import PromptParts, build_context, check_parts, render
from nas_core.designers.validation import spec_problems
from nas_core.errors import UserError
from nas_core.records import Proposal

log = logging.getLogger(__name__)

# The answer echoed back in a follow-up is cut shorter than the parse cap: the LLM only needs a reminder.
_ECHO_CHARS = 8000


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
    error: str  # "" when this answer became a proposal
    attempt: int  # 0 = first request of this proposal, then follow-ups
    structured: bool = False

    def messages_json(self) -> str:
        """The messages as a JSON list of {role, content}."""
        return json.dumps([{"role": r, "content": c} for r, c in self.messages])


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
        """Up to ``ctx.n`` proposals, each from its own conversation.

        Raises:
            PromptError: a prompt part names an unknown placeholder (nothing is sent).
            LlmError: the endpoint failed after the HTTP retries.
            LlmDesignError: no valid new architecture within the follow-up cap.
        """
        rendered = render(self.parts, build_context(ctx, self.settings.history_k))
        schema = answer_schema() if self.settings.structured != "off" else None
        known = set(ctx.known_keys)
        proposals: list[Proposal] = []
        last_errors: list[str] = []
        for _ in range(ctx.n):
            messages = rendered.messages()
            if proposals:
                taken = "\n".join(p.spec.to_json() for p in proposals)
                messages[-1] = {
                    "role": "user",
                    "content": messages[-1]["content"]
                    + "\n\nThis round already has these proposals; design a different one:\n"
                    + taken,
                }
            try:
                proposal, last_errors = self._one(messages, rendered.text, schema, ctx, known)
            except LlmError as exc:
                if not proposals:
                    raise
                # Keep what this round already produced; the failure is in the call log.
                log.warning("LLM failed after %d proposal(s): %s", len(proposals), exc)
                break
            if proposal is None:
                break
            proposals.append(proposal)
            known.add(proposal.spec.key)
        if not proposals:
            raise LlmDesignError(
                f"the LLM gave no valid new architecture in {self.settings.max_retries + 1} tries; "
                f"last problems: {'; '.join(last_errors)[:1500]}. Rephrase the prompt, raise the retries, "
                "or use the heuristic engine"
            )
        return proposals

    def _one(self, messages, prompt_text, schema, ctx, known):
        errors: list[str] = []
        for attempt in range(self.settings.max_retries + 1):
            sent = tuple((m["role"], m["content"]) for m in messages)
            try:
                res = self._client.chat(messages, schema)
            except LlmError as exc:
                self._record(LlmCall(prompt_text, sent, "", self.settings.model, None, None, 0.0, str(exc), attempt))
                raise
            raw, _ = cap_answer(res.text, self.settings.max_answer_chars)
            errors = []
            proposal = None
            try:
                parsed = parse_answer(res.text, self.settings.max_answer_chars)
            except AnswerError as exc:
                errors = exc.errors
            else:
                errors = spec_problems(parsed.spec, ctx)
                if not errors and parsed.spec.key in known:
                    errors = [
                        "this architecture was already proposed or measured in this run "
                        f"(key {parsed.spec.key}); propose a different one"
                    ]
                if not errors:
                    proposal = Proposal(spec=parsed.spec, origin=self.name, rationale=parsed.rationale)
            self._record(
                LlmCall(prompt_text, sent, raw, res.model, res.tokens_in, res.tokens_out, res.duration_s,
                        "; ".join(errors), attempt, res.structured)
            )
            if proposal is not None:
                return proposal, []
            log.info("LLM answer rejected (attempt %d): %s", attempt, "; ".join(errors)[:300])
            messages = list(messages) + [
                {"role": "assistant", "content": raw[:_ECHO_CHARS]},
                {"role": "user", "content": "Your answer cannot be used:\n- " + "\n- ".join(errors)
                 + "\nFix these problems and answer again with exactly one JSON object "
                 '{"architecture": {...}, "rationale": "..."}.'},
            ]
        return None, errors
