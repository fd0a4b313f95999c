"""A bearer-token front for a test registry: answers 401 with a Bearer challenge, issues
tokens at its own realm, and forwards authenticated requests to the registry behind it.

Docker Hub and most public registries authenticate this way; Debian's registry package cannot
without a separate token service, so the tests put this in front of it (loopback only)."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import secrets
import threading
import urllib.parse
from types import TracebackType
from typing import Self

__all__ = ["TokenProxy"]


class TokenProxy:
    """Listens on 127.0.0.1 (a free port); `needs_login` makes the token realm ask for basic
    credentials too (as Docker Hub does for private repositories)."""

    def __init__(self, backend_port: int, login: tuple[str, str] | None = None) -> None:
        self.backend_port = backend_port
        self.login = login
        self.token = secrets.token_hex(16)
        self.token_requests: list[dict[str, str]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                if self.path.startswith("/token"):
                    proxy._issue(self)
                elif self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    realm = f"http://127.0.0.1:{proxy.port}/token"
                    challenge = f'Bearer realm="{realm}",service="test-registry"'
                    if self.path.startswith("/v2/") and "/" in self.path[4:]:
                        repo = self.path[4:].rsplit("/", 2)[0]
                        challenge += f',scope="repository:{repo}:pull"'
                    self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
                else:
                    proxy._forward(self)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _issue(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        query = handler.path.partition("?")[2]
        self.token_requests.append(dict(urllib.parse.parse_qsl(query)))
        if self.login is not None:
            expected = "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
            if handler.headers.get("Authorization") != expected:
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad login"}]}'
                handler.send_response(401)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
                return
        body = json.dumps({"token": self.token, "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() != "authorization"}
            conn.request(handler.command, handler.path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            handler.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(body)
        finally:
            conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
