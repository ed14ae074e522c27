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
"""

from __future__ import annotations

import json
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


class FakeLlmServer:
    """The server; a context manager that starts and stops it in a daemon thread."""

    def __init__(self, script: list[Step], model: str = "fake-model"):
        self.script = list(script)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._i = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

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
