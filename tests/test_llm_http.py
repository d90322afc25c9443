"""The model client's HTTP: keep-alive connections, a server that closes them, replies that are no completion."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from builder.llm import ChatClient, LLMConfig, TryAgain
from builder.llm_http import JSONPost


class _Server:
    """Answers every POST with ``reply``; with ``drop_after_reply`` it closes each connection without saying so
    (as a server does when a kept-alive connection has been idle too long)."""

    def __init__(self, reply: dict[str, Any] | bytes, drop_after_reply: bool = False) -> None:
        self.connections, self.requests = 0, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                server.connections += 1

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                server.requests += 1
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = drop_after_reply

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(reply: dict[str, Any] | bytes, drop: bool = False) -> _Server:
        servers.append(_Server(reply, drop))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_calls_share_one_connection(serve: Any) -> None:
    server = serve(_completion("hello"))
    client = ChatClient(LLMConfig(base_url=server.url, model="m"))
    assert [client.try_once([], lambda text: text) for _ in range(5)] == ["hello"] * 5
    assert server.connections == 1
    assert client.usage == {"requests": 5, "prompt_tokens": 35, "completion_tokens": 15}


def test_a_connection_the_server_closed_is_opened_again(serve: Any) -> None:
    server = serve(_completion("again"), drop=True)
    post = JSONPost(server.url, {}, timeout=5)
    replies = [post.post("/chat/completions", {"n": i}) for i in range(4)]
    assert [r.body["choices"][0]["message"]["content"] for r in replies] == ["again"] * 4
    assert server.requests == 4  # each request reached the server once
    assert server.connections == 4


@pytest.mark.parametrize("reply", [b"<html>busy</html>", b"", {"object": "error"}, {"choices": []}])
def test_a_reply_that_is_no_completion_is_tried_again(serve: Any, reply: dict[str, Any] | bytes) -> None:
    client = ChatClient(LLMConfig(base_url=serve(reply).url, model="m"))
    with pytest.raises(TryAgain, match="unusable answer"):
        client.try_once([], lambda text: text)


def test_no_server_is_tried_again() -> None:
    client = ChatClient(LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout=2))
    with pytest.raises(TryAgain, match="ConnectionRefusedError"):
        client.try_once([], lambda text: text)


def test_not_http_is_a_reject_naming_it() -> None:
    from builder.errors import Reject

    with pytest.raises(Reject, match="not an http"):
        ChatClient(LLMConfig(base_url="ftp://example.org/v1", model="m"))
