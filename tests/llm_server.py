"""A local OpenAI-compatible chat-completions server for the tests (127.0.0.1).

It speaks the real protocol (``POST /v1/chat/completions``) so the project's
client is exercised as against vLLM or OpenAI; ``answer(request_json)`` decides each reply:
a string (the assistant's content), an int (an HTTP error status), or an int and
headers (``(429, {"Retry-After": "1"})``). ``peak`` is the most requests it held at once.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Answer = Callable[[dict[str, Any]], "str | int | tuple[int, dict[str, str]]"]


class _Listener(ThreadingHTTPServer):
    # a listen backlog as model servers have it (uvicorn: 2048): socketserver's default of 5 drops the SYNs of a
    # client opening 128 connections at once, and each dropped one waits the kernel's 1 s retransmit
    request_queue_size = 2048


class ChatServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0
        self.times: list[tuple[float, dict[str, Any]]] = []  # (arrival, request)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as model servers (vLLM, TGI, OpenAI) keep connections open
            # TCP_NODELAY, as uvicorn sets it for vLLM: without it the reply's headers and body, written apart, wait
            # for the client's delayed ACK (about 40 ms a call here)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.times.append((time.monotonic(), body))
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    self._answer(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, body: dict[str, Any]) -> None:
                if self.path != "/v1/chat/completions":
                    return self._reply(404, {"error": {"message": "not found"}})
                result = server.answer(body)
                if isinstance(result, tuple):
                    return self._reply(result[0], {"error": {"message": "busy", "type": "server_error"}}, result[1])
                if isinstance(result, int):
                    return self._reply(result, {"error": {"message": "server error", "type": "server_error"}})
                self._reply(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion",
                    "created": int(time.time()), "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": result}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                })

            def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _Listener(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def prompt_text(request: dict[str, Any]) -> str:
    """The text parts of the user message."""
    content = request["messages"][-1]["content"]
    return "\n".join(part["text"] for part in content if part.get("type") == "text")


def image_url(request: dict[str, Any]) -> str:
    content = request["messages"][-1]["content"]
    return next(part["image_url"]["url"] for part in content if part.get("type") == "image_url")
