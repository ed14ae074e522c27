"""One redaction function for every string that is stored or logged: keys never reach the disk.

Owns :func:`redact` (used by the store on every free-text column it writes: LLM prompts, raw
answers, messages, rationales, errors, event details, feedback) and the process-wide list of
secrets in memory (:func:`register_secret`: the app registers the key typed in a browser
session, the LLM client the key it resolved), plus :class:`RedactingFilter` for log handlers.

What is removed, in this order:

1. every registered secret and the value of every secret-named environment variable
   (``*API_KEY``, ``*TOKEN``, ``*SECRET``, ``*PASSWORD`` ...), with their first and last 8
   characters (servers echo shortened keys such as ``sk-abcd...wxyz``);
2. anything shaped like a key, whoever's it is: ``sk-``/``sk_``/``pk-``/``rk-`` keys,
   ``Bearer``/``Basic`` credentials, ``Authorization:`` / ``api_key=`` / ``"api_key": "..."``
   values, GitHub, Slack, AWS and Google key prefixes, and long secret-looking runs (40+
   hex characters, or 40+ base64/url-safe characters mixing letters and digits).

A SHA-256 hex digest is 64 hex characters, so content hashes in free text are removed as well:
a false positive costs a hash in a message, a false negative could cost a leaked key. Columns
that hold hashes on purpose (content_hash, key, cache_key) are not free text and are not redacted.
"""

from __future__ import annotations

import logging
import os
import re
import threading

MASK = "[redacted]"

_SECRET_NAME = re.compile(r"(^|[_\-.])(api_?key|apikey|secret|token|password|passwd|credentials?)($|[_\-.])", re.I)

# (pattern, keep its first group): the name before a value stays readable ("api_key=[redacted]").
_PATTERNS = [
    (re.compile(r"""(?i)((?:api[_-]?key|access[_-]?token|auth[_-]?token|secret|password|authorization|x-api-key)"""
                r"""["']?\s*[:=]\s*["']?)(?:bearer\s+|basic\s+)?[^\s"',;}]{6,}"""), True),
    (re.compile(r"(?i)\b(bearer\s+|basic\s+)[A-Za-z0-9._~+/=-]{8,}"), True),
    (re.compile(r"\b(?:sk|pk|rk)[-_](?:[A-Za-z0-9]+[-_])*[A-Za-z0-9]{12,}"), False),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{16,}"), False),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), False),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), False),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), False),
    (re.compile(r"\b[0-9a-fA-F]{40,}\b"), False),
]
# Long base64 / url-safe runs; "/" is left out so that file paths stay readable.
_LONG_B64 = re.compile(r"[A-Za-z0-9+_-]{40,}={0,2}")

_lock = threading.Lock()
_secrets: set[str] = set()


def is_secret_name(name: str) -> bool:
    """True for names of secrets (api_key, client_secret, access_token, password, key, authorization ...)."""
    return bool(_SECRET_NAME.search(str(name))) or str(name).lower() in {"key", "auth", "authorization"}


def register_secret(value: str | None) -> None:
    """Remember a secret held in memory (a browser session's key) so every stored string loses it."""
    if value and len(value.strip()) >= 6:
        with _lock:
            _secrets.add(value.strip())


def forget_secret(value: str | None) -> None:
    """Stop redacting ``value`` specially (patterns still apply)."""
    if value:
        with _lock:
            _secrets.discard(value.strip())


def _known(extra: tuple[str | None, ...]) -> list[str]:
    with _lock:
        known = set(_secrets)
    known |= {v for v in extra if v and len(v) >= 6}
    known |= {v for k, v in os.environ.items() if len(v) >= 8 and is_secret_name(k)}
    # Longest first, so a key is never half-replaced by one of its own fragments.
    return sorted(known, key=len, reverse=True)


def _looks_secret(run: str) -> bool:
    """Random-looking: several digits, upper- and lower-case letters (identifiers and words are not)."""
    core = run.rstrip("=")
    return (sum(c.isdigit() for c in core) >= 4 and sum(c.isupper() for c in core) >= 4
            and sum(c.islower() for c in core) >= 4)


def redact(text: str | None, *secrets: str | None) -> str:
    """``text`` without any known secret (registered, in the environment, or passed) or key-shaped string.

    Args:
        text: any text about to be stored or logged (None becomes "").
        *secrets: more secrets to remove (e.g. the key of the call being recorded).
    """
    if not text:
        return text or ""
    out = str(text)
    for value in _known(secrets):
        if value in out:
            out = out.replace(value, MASK)
        if len(value) >= 16:  # an echo of a shortened key
            for frag in (value[:8], value[-8:]):
                out = out.replace(frag, MASK)
    for pat, keep in _PATTERNS:
        out = pat.sub(lambda m, keep=keep: (m.group(1) if keep else "") + MASK, out)
    return _LONG_B64.sub(lambda m: MASK if _looks_secret(m.group(0)) else m.group(0), out)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message (attach to handlers that write files)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging's name
        """Redact the formatted message in place; never drops a record."""
        try:
            msg = record.getMessage()
        except (TypeError, ValueError):
            return True
        record.msg, record.args = redact(msg), ()
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
