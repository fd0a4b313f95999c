"""`composer serve`'s control socket: a unix socket only its owner (root) may use, that
answers one JSON request line with one JSON document line, then closes (specs/serve.md)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import SocketListener, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["ask", "serve_socket"]

_MAX_REQUEST: Final = 64 * 1024
_REQUEST_TIMEOUT: Final = 5.0  # seconds a client has to send its line

Answer = Callable[[object], dict[str, Any]]  # a request → its answer (called in a thread)


async def serve_socket(
    path: Path, answer: Answer, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Listen on `path` (mode 0600 from the start: bound under a temporary name, then renamed)
    until cancelled, then remove it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        sock.bind(str(temporary))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        sock.listen(16)
    except OSError:
        sock.close()
        temporary.unlink(missing_ok=True)
        raise
    listener = await SocketListener.from_socket(sock)
    try:
        task_status.started()

        async def handle(stream: SocketStream) -> None:
            await _handle(stream, answer)

        await listener.serve(handle)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        with anyio.CancelScope(shield=True):
            await listener.aclose()


async def _handle(stream: SocketStream, answer: Answer) -> None:
    async with stream:
        try:
            with anyio.fail_after(_REQUEST_TIMEOUT):
                line = await BufferedByteReceiveStream(stream).receive_until(b"\n", _MAX_REQUEST)
            request = json.loads(line)
        except TimeoutError:
            document = {"error": f"no request line within {_REQUEST_TIMEOUT:g} s"}
        except anyio.DelimiterNotFound:
            document = {"error": f"the request line is over {_MAX_REQUEST} bytes"}
        except ValueError as exc:
            document = {"error": f"the request is not JSON: {exc}"}
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            return  # the client went away
        else:
            try:
                document = await anyio.to_thread.run_sync(answer, request)
            except Exception as exc:  # one failed answer must not end the service
                document = {"error": f"internal error: {type(exc).__name__}: {exc}"}
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(json.dumps(document).encode() + b"\n")


def ask(path: Path, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to a serve's socket; its answer (OSError when none answers)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer
