"""A thin, safe client for any OpenAI-compatible chat endpoint (OpenAI, Azure, Ollama, vLLM, llama.cpp).

Owns :class:`LlmSettings` (base URL, model, temperature, timeout, retries; never
the key), key resolution (:func:`resolve_api_key`: passed in memory, else
``EQUINAS_LLM_API_KEY``, else ``OPENAI_API_KEY``), :class:`LlmClient` (one chat
call through the real ``openai`` SDK with structured outputs when the endpoint
supports them) and redaction of the key from any error text.

HTTP 429 and 5xx answers, timeouts and connection errors are retried up to
``http_retries`` times with exponential backoff (honouring ``Retry-After`` /
``retry-after-ms``), all inside one deadline of ``timeout_s`` for the whole call:
each try gets what is left of it, so a 60 s timeout never becomes 3 x 60 s.

Constrained decoding (``LlmSettings.decoding``) is a ladder of rungs, strongest first:

- ``json_schema``: ``response_format`` of type ``json_schema`` with the answer's
  schema, strict (OpenAI, Azure OpenAI, vLLM, SGLang, llama.cpp, LM Studio);
- ``ollama``: the schema as Ollama's native ``format`` field (sent through the
  OpenAI-compatible endpoint in the request body) and as ``response_format``;
- ``json_object``: ``response_format`` of type ``json_object`` (valid JSON, any shape);
- ``text``: plain chat; the first JSON object is extracted from the answer.

``auto`` (the default) asks the server once whether it is Ollama
(``GET /api/version`` beside the ``/v1`` base URL) and starts at ``ollama`` if
so, else at ``json_schema``; a rung the endpoint refuses (HTTP 400/404/415/422)
is dropped for the rest of the client's life and the request is sent again one
rung lower. A named rung is used alone (no fallback). Every :class:`ChatResult`
says which rung produced it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas_core.errors import UserError

log = logging.getLogger(__name__)

KEY_ENV_VARS = ("EQUINAS_LLM_API_KEY", "OPENAI_API_KEY")
#: Constrained-decoding rungs, strongest first (see the module docstring).
RUNGS = ("json_schema", "ollama", "json_object", "text")
DECODING_MODES = ("auto",) + RUNGS
#: HTTP statuses that mean "this request shape is not supported here" (try the next rung).
_REFUSED = (400, 404, 415, 422)
# Local servers (Ollama, vLLM, llama.cpp) accept any key, but the SDK insists on one.
_PLACEHOLDER_KEY = "not-needed"


class LlmError(UserError):
    """The endpoint could not be used (unreachable, timed out, refused, rate-limited past the retries)."""


@dataclass(frozen=True)
class LlmSettings:
    """How to reach the model. The API key is deliberately not a field: it never gets stored."""

    base_url: str | None = None  # e.g. http://localhost:11434/v1 (Ollama); None = api.openai.com
    model: str = "gpt-4o-mini"  # model name as the endpoint knows it
    temperature: float = 0.7  # sampling temperature
    timeout_s: float = 120.0  # one deadline for a whole chat call, every HTTP retry included
    max_retries: int = 3  # follow-ups after an invalid answer (validation errors, duplicates)
    http_retries: int = 2  # retries after 429/5xx/timeouts/connection errors, backoff, all within timeout_s
    structured: str = "auto"  # auto | on | off: kept for old run configs; on = json_schema, off = text
    decoding: str = "auto"  # auto | json_schema | ollama | json_object | text (see the module docstring)
    history_k: int = 5  # how many recent candidates the prompt lists
    max_answer_chars: int = 64 * 1024  # answers are cut to this before parsing

    def __post_init__(self) -> None:
        if self.structured not in ("auto", "on", "off"):
            raise LlmError(f"structured must be auto, on or off, got {self.structured!r}")
        if self.decoding not in DECODING_MODES:
            raise LlmError(f"decoding must be one of {', '.join(DECODING_MODES)}, got {self.decoding!r}")
        if not self.model:
            raise LlmError("an LLM model name is needed (e.g. gpt-4o-mini, llama3.1)")
        if not self.timeout_s > 0:
            raise LlmError(f"timeout must be positive, got {self.timeout_s}")
        if self.max_retries < 0 or self.http_retries < 0:
            raise LlmError("retry counts must be 0 or more")
        if not 0 <= self.temperature <= 2:
            raise LlmError(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.base_url is not None and not str(self.base_url).startswith(("http://", "https://")):
            raise LlmError(f"base URL must start with http:// or https://, got {self.base_url!r}")

    def ladder(self, ollama: bool = False) -> tuple[str, ...]:
        """The rungs to try, in order; ``ollama``: the endpoint was detected as Ollama."""
        if self.decoding != "auto":
            return (self.decoding,)
        if self.structured == "off":
            return ("text",)
        if self.structured == "on":
            return ("json_schema",)
        return ("ollama" if ollama else "json_schema", "json_object", "text")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (no key: there is none to leak)."""
        return {
            "base_url": self.base_url, "model": self.model, "temperature": self.temperature,
            "timeout_s": self.timeout_s, "max_retries": self.max_retries, "http_retries": self.http_retries,
            "structured": self.structured, "decoding": self.decoding, "history_k": self.history_k, "max_answer_chars": self.max_answer_chars,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LlmSettings:
        """Inverse of :meth:`to_dict`; a key-like field is refused rather than kept."""
        data = dict(data or {})
        secret = [k for k in data if any(s in k.lower() for s in ("key", "secret", "token", "password"))]
        if secret:
            raise LlmError(
                f"LLM settings must not contain secrets ({secret}); put the key in EQUINAS_LLM_API_KEY "
                "or OPENAI_API_KEY instead"
            )
        allowed = set(cls().to_dict())
        unknown = set(data) - allowed
        if unknown:
            raise LlmError(f"LLM settings: unknown field(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise LlmError(f"LLM settings: {exc}") from exc


def resolve_api_key(api_key: str | None = None) -> str | None:
    """The key to use: passed in memory, else EQUINAS_LLM_API_KEY, else OPENAI_API_KEY, else None."""
    if api_key:
        return api_key
    for var in KEY_ENV_VARS:
        value = os.environ.get(var)
        if value:
            return value
    return None


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (and of its long parts) replaced by ``***``."""
    if not secret or not text:
        return text
    out = text.replace(secret, "***")
    # Servers sometimes echo a shortened key ("sk-abc...wxyz"); hide long fragments too.
    if len(secret) >= 12:
        for frag in (secret[:8], secret[-8:]):
            out = out.replace(frag, "***")
    return out


@dataclass(frozen=True)
class ChatResult:
    """One answer from the endpoint."""

    text: str
    model: str
    tokens_in: int | None
    tokens_out: int | None
    duration_s: float
    structured: bool  # True when the answer was decoded under the JSON schema (json_schema or ollama)
    decoding: str = "text"  # the rung that produced this answer (see RUNGS)


class LlmClient:
    """Sends chat requests to one endpoint.

    Args:
        settings: endpoint and retry settings.
        api_key: kept in memory only; see :func:`resolve_api_key` for the fallbacks.
    """

    def __init__(self, settings: LlmSettings, api_key: str | None = None):
        import openai  # imported here: the rest of the engine does not need it loaded

        self.settings = settings
        self._key = resolve_api_key(api_key)
        self._rungs: list[str] | None = None  # resolved at the first call (auto detection probes the server)
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=self._key or _PLACEHOLDER_KEY,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            # Retries are ours (see chat): the SDK's would give every try the full timeout again.
            max_retries=0,
        )

    def redact(self, text: str) -> str:
        """Remove the key from ``text``."""
        return redact(text, self._key)

    def is_ollama(self) -> bool:
        """Whether the endpoint is an Ollama server (it answers ``GET /api/version`` beside ``/v1``)."""
        url = self.settings.base_url
        if not url:
            return False
        root = url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(root + "/api/version", timeout=min(3.0, self.settings.timeout_s)) as resp:
                body = json.loads(resp.read(4096) or b"{}")
        except (urllib.error.URLError, OSError, ValueError):  # not Ollama, or not reachable (the chat says so)
            return False
        return isinstance(body, dict) and "version" in body

    @property
    def rungs(self) -> tuple[str, ...]:
        """The rungs still in play, strongest first (resolved, with the Ollama probe, on first use)."""
        if self._rungs is None:
            ollama = self.settings.decoding == "auto" and self.settings.structured == "auto" and self.is_ollama()
            self._rungs = list(self.settings.ladder(ollama=ollama))
            log.info("LLM decoding ladder for %s: %s", self.settings.base_url or "api.openai.com", self._rungs)
        return tuple(self._rungs)

    def chat(self, messages: Sequence[Mapping[str, str]], schema: Mapping[str, Any] | None = None) -> ChatResult:
        """One chat completion, on the strongest rung the endpoint accepts (``text`` without a schema).

        Raises:
            LlmError: unreachable, timed out, refused or rate-limited beyond the retries;
                the message never contains the key.
        """
        deadline = time.monotonic() + self.settings.timeout_s
        tries = 0
        while True:
            rung = self.rungs[0] if schema is not None else "text"
            tries += 1
            try:
                return self._call(messages, schema, rung, deadline)
            except (self._openai.APITimeoutError, self._openai.APIConnectionError, self._openai.RateLimitError,
                    self._openai.InternalServerError) as exc:
                wait = self._retry_wait(exc, tries)
                if tries > self.settings.http_retries or time.monotonic() + wait >= deadline:
                    raise self._wrap(exc, rung, tries) from None
                log.info("LLM endpoint: %s; retry %d in %.2f s", type(exc).__name__, tries, wait)
                time.sleep(wait)
            except self._openai.APIStatusError as exc:
                lower = rung != "text" and len(self.rungs) > 1 and exc.status_code in _REFUSED
                if not lower:
                    raise self._wrap(exc, rung) from None
                log.info("endpoint refused %s decoding (HTTP %s: %s); trying %s", rung, exc.status_code,
                         self.redact(str(exc))[:200], self.rungs[1])
                assert self._rungs is not None
                self._rungs.pop(0)
            except self._openai.OpenAIError as exc:
                raise self._wrap(exc, rung, tries) from None

    @staticmethod
    def _retry_wait(exc: Exception, tries: int) -> float:
        """Seconds before the next try: the server's Retry-After when it sends one, else 0.5 s doubling."""
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                return min(max(float(headers.get(name)) * scale, 0.0), 60.0)
            except (TypeError, ValueError):
                continue
        return min(0.5 * 2 ** (tries - 1), 8.0)

    def _call(self, messages: Sequence[Mapping[str, str]], schema: Mapping[str, Any] | None, rung: str,
              deadline: float | None = None) -> ChatResult:
        kwargs: dict[str, Any] = {}
        if rung in ("json_schema", "ollama") and schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "architecture_proposal", "schema": dict(schema), "strict": True},
            }
            if rung == "ollama":
                kwargs["extra_body"] = {"format": dict(schema)}
        elif rung == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        if deadline is not None:  # each try gets what is left of the one deadline
            kwargs["timeout"] = max(deadline - time.monotonic(), 0.05)
        start = time.perf_counter()
        resp = self._client.chat.completions.create(
            model=self.settings.model,
            messages=[dict(m) for m in messages],  # type: ignore[misc]
            temperature=self.settings.temperature,
            **kwargs,
        )
        duration = time.perf_counter() - start
        text = ""
        if resp.choices:
            text = resp.choices[0].message.content or ""
        usage = resp.usage
        return ChatResult(
            text=text,
            model=resp.model or self.settings.model,
            tokens_in=None if usage is None else usage.prompt_tokens,
            tokens_out=None if usage is None else usage.completion_tokens,
            duration_s=duration,
            structured=rung in ("json_schema", "ollama"),
            decoding=rung,
        )

    def _wrap(self, exc: Exception, rung: str = "text", tries: int | None = None) -> LlmError:
        o = self._openai
        where = self.settings.base_url or "api.openai.com"
        tries = self.settings.http_retries + 1 if tries is None else tries
        if isinstance(exc, o.APITimeoutError):
            msg = (f"the LLM endpoint {where} did not answer within {self.settings.timeout_s:g} s "
                   f"({tries} {'try' if tries == 1 else 'tries'}, one deadline for all); raise the timeout or "
                   "check the server")
        elif isinstance(exc, o.APIConnectionError):
            msg = f"cannot reach the LLM endpoint {where}; check the base URL and that the server is running"
        elif isinstance(exc, o.AuthenticationError):
            msg = (f"the LLM endpoint {where} refused the API key (HTTP 401); set EQUINAS_LLM_API_KEY or "
                   "OPENAI_API_KEY to a valid key")
        elif isinstance(exc, o.RateLimitError):
            msg = f"the LLM endpoint {where} is rate-limiting (HTTP 429) after {tries} tries; wait and retry"
        elif isinstance(exc, o.NotFoundError):
            msg = (f"the LLM endpoint {where} answered 404: check the base URL (it usually ends in /v1) "
                   f"and the model name {self.settings.model!r}")
        elif isinstance(exc, o.APIStatusError):
            msg = f"the LLM endpoint {where} answered HTTP {exc.status_code}: {str(exc)[:300]}"
            if rung != "text" and exc.status_code in _REFUSED and self.settings.decoding != "auto":
                msg += (f" (with decoding {rung!r}; set decoding to auto, or to a rung the server supports: "
                        f"{', '.join(RUNGS)})")
        else:
            msg = f"the LLM call failed: {str(exc)[:300]}"
        return LlmError(self.redact(msg))
