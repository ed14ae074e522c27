"""A small scripted OpenAI-compatible chat server on 127.0.0.1 for tests (driven by the real openai SDK).

Usage::

    with FakeLlmServer([reply('{"architecture": ...}'), status(429), ...]) as srv:
        settings = LlmSettings(base_url=srv.base_url, model="fake")

Each request to ``POST /v1/chat/completions`` takes the next step of the script
(the last step repeats once the script is used up). A step is a :class:`Step`:
an answer text, an HTTP status with a body and headers, a delay before
answering, or a refusal of ``response_format`` (an endpoint without structured
outputs). Every request body and its headers are kept in ``requests`` so a test
can check what the client sent.

Modes (``mode=``) that play a model behind a server with a given kind of constrained decoding:

- ``"script"`` (default): the scripted steps above.
- ``"schema"``: the server decodes under the request's ``response_format`` JSON schema: every answer
  is a random instance of it (:func:`instance_of`), like OpenAI strict mode, vLLM or llama.cpp.
- ``"json_object"``: ``response_format`` ``json_schema`` is refused with HTTP 400; ``json_object``
  (or nothing) gives a JSON object: a random instance of ``knows`` (what the model read in the prompt);
  with probability ``noise`` an answer slips (some of its enum values, 5% each, are wrong).
- ``"text"``: any ``response_format`` is refused with HTTP 400; the answer is prose around a fenced
  JSON instance of ``knows`` (with ``noise``).
- ``"ollama"``: like Ollama's OpenAI-compatible endpoint: ``GET /api/version`` answers; the body's
  native ``format`` field (a schema) constrains the answer; ``response_format`` ``json_schema`` is
  ignored (prose around an instance of ``knows``); ``json_object`` gives JSON.

``knows`` is a schema of ONE proposal; when the prompt asks for several ("holding N different
designs"), the modes without a schema answer ``{"proposals": [N instances]}``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Step:
    """One scripted response."""

    content: str = ""  # assistant message text (status 200)
    status: int = 200
    body: dict[str, Any] | None = None  # JSON body for non-200 answers
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (timeouts)
    refuse_structured: bool = False  # answer 400 when the request carries response_format


def reply(content: str, **kw: Any) -> Step:
    """A 200 answer whose message is ``content``."""
    return Step(content=content, **kw)


def status(code: int, message: str = "scripted error", **kw: Any) -> Step:
    """An error answer with an OpenAI-style error body."""
    return Step(status=code, body={"error": {"message": message, "type": "scripted", "code": code}}, **kw)


_WORDS = ("wider", "deeper", "fairer", "small", "groups", "kernel", "channels", "because", "the", "a")


def instance_of(schema: dict[str, Any], rng: random.Random, noise: float = 0.0) -> Any:
    """A random JSON value the schema allows (type/enum/anyOf/object/array/minItems/maxItems).

    With ``noise`` > 0, each enum value is replaced by one outside the enum with that probability.
    """
    if "anyOf" in schema:
        return instance_of(rng.choice(schema["anyOf"]), rng, noise)
    if "enum" in schema:
        value = rng.choice(schema["enum"])
        if noise and rng.random() < noise:
            return _wrong(value, schema["enum"])
        return value
    kind = schema.get("type")
    if kind == "object":
        return {k: instance_of(v, rng, noise) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        lo = schema.get("minItems", 0)
        hi = schema.get("maxItems", lo + 3)
        return [instance_of(schema.get("items", {}), rng, noise) for _ in range(rng.randint(lo, hi))]
    if kind == "string":
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "integer":
        return rng.randint(-5, 100)
    if kind == "number":
        return round(rng.uniform(-1, 10), 3)
    return None


def _wrong(value: Any, allowed: list[Any]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return max(allowed) + 1
    if isinstance(value, float):
        return 0.987
    return "ok"


class FakeLlmServer:
    """The server; a context manager that starts and stops it in a daemon thread."""

    def __init__(self, script: list[Step] | None = None, model: str = "fake-model", *, mode: str = "script",
                 knows: dict[str, Any] | None = None, noise: float = 0.0, seed: int = 0):
        if mode not in ("script", "schema", "json_object", "text", "ollama"):
            raise ValueError(f"unknown mode {mode!r}")
        self.script = list(script or [Step()])
        self.model = model
        self.mode = mode
        self.knows = knows
        self.noise = noise
        self.rng = random.Random(seed)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._i = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if server.mode == "ollama" and self.path.rstrip("/") == "/api/version":
                    self._send(200, {"version": "0.6.5"}, {})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = server.script[min(server._i, len(server.script) - 1)]
                    server._i += 1
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                if server.mode != "script":
                    with server._lock:
                        code, content = server._model_answer(body)
                    if code != 200:
                        self._send(code, {"error": {"message": content, "type": "invalid_request_error"}}, {})
                        return
                    step = Step(content=content)
                if step.delay_s:
                    time.sleep(step.delay_s)
                if step.refuse_structured and "response_format" in body:
                    self._send(400, {"error": {"message": "response_format is not supported"}}, {})
                    return
                if step.status != 200:
                    self._send(step.status, step.body or {}, step.headers)
                    return
                payload = {
                    "id": f"chatcmpl-{server._i}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": server.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": step.content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages", [])),
                        "completion_tokens": len(step.content) // 4,
                        "total_tokens": 0,
                    },
                }
                self._send(200, payload, step.headers)

            def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _knows(self, body: dict[str, Any]) -> Any:
        """An instance of what the model "read in the prompt" (``knows``), n of them when asked for n."""
        if self.knows is None:
            raise ValueError(f"mode {self.mode!r} needs knows= (the schema of one proposal)")
        last = next((m.get("content", "") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        m = re.search(r"holding (\d+) different designs", str(last))
        noise = 0.05 if self.noise and self.rng.random() < self.noise else 0.0  # this answer slips
        if m is None:
            return instance_of(self.knows, self.rng, noise)
        return {"proposals": [instance_of(self.knows, self.rng, noise) for _ in range(int(m.group(1)))]}

    def _prose(self, value: Any) -> str:
        return f"Here is my design.\n```json\n{json.dumps(value, indent=1)}\n```\nI hope it helps!"

    def _model_answer(self, body: dict[str, Any]) -> tuple[int, str]:
        """(HTTP status, answer text or error message) of the non-script modes."""
        rf = body.get("response_format") or {}
        kind = rf.get("type") if isinstance(rf, dict) else None
        if self.mode == "schema":
            if kind == "json_schema":
                return 200, json.dumps(instance_of(rf["json_schema"]["schema"], self.rng))
            return 200, self._prose(self._knows(body)) if self.knows else "I cannot help with that."
        if self.mode == "json_object":
            if kind not in (None, "json_object", "text"):
                return 400, f"response_format.type {kind!r} is not supported; use 'json_object'"
            return 200, json.dumps(self._knows(body))
        if self.mode == "text":
            if rf:
                return 400, "response_format is not supported by this server"
            return 200, self._prose(self._knows(body))
        fmt = body.get("format")  # ollama
        if isinstance(fmt, dict):
            return 200, json.dumps(instance_of(fmt, self.rng))
        if fmt == "json" or kind == "json_object":
            return 200, json.dumps(self._knows(body))
        return 200, self._prose(self._knows(body))

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL to give the openai SDK."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def n_requests(self) -> int:
        """Requests received so far."""
        return len(self.requests)

    def start(self) -> FakeLlmServer:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLlmServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
