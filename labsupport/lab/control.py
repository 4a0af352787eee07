"""The control channel: how ``python -m labsupport`` commands reach a running lab.

A running lab listens on an ephemeral port on 127.0.0.1 for one JSON object per line,
``{"token": ..., "command": "reset", "args": {...}}``, and answers one JSON line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. The port and a
random token are in the state directory's ``lab.json`` (mode 0600, in a 0700 folder), so
only the user who runs the lab can drive it. Since every local user can connect to a
loopback port, the server also asks who connected
(:func:`labsupport.core.peers.same_user`) and answers a process of another user with
``{"ok": false, "error": "refused: this lab belongs to another user ..."}`` whatever
token it sends (on hosts that cannot tell, macOS and Windows, the token alone guards it).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core.errors import LabError, LabNotRunning
from ..core.peers import PeerCheck, check_transport
from .statedir import read_runtime

#: The longest request line accepted, in bytes.
MAX_REQUEST = 1 << 20


class ControlServer:
    """Runs a lab's commands for clients that present its token."""

    def __init__(self, commands: Mapping[str, Callable[..., Any]]) -> None:
        self.commands = commands
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        #: The latest connections refused because another user made them.
        self.refused: deque[PeerCheck] = deque(maxlen=20)
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, limit=MAX_REQUEST
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            check = check_transport(writer.transport)
            line = await asyncio.wait_for(reader.readline(), 10)  # read, so close sends no RST
            if check.allowed:
                reply = await self._handle(line)
            else:
                self.refused.append(check)
                reply = {"ok": False, "error": refusal(check)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "the request is not JSON"}
        if not isinstance(request, dict) or not secrets.compare_digest(
            str(request.get("token", "")), self.token
        ):
            return {"ok": False, "error": "wrong or missing token"}
        name = request.get("command")
        handler = self.commands.get(name) if isinstance(name, str) else None
        if handler is None:
            known = ", ".join(sorted(self.commands))
            return {"ok": False, "error": f"unknown command {name!r}; known: {known}"}
        args = request.get("args") or {}
        loop = asyncio.get_running_loop()
        try:
            # Commands may block (zone edits take a lock): run them off the event loop.
            result = await loop.run_in_executor(None, lambda: handler(**args))
        except (LabError, ValueError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the client must get a reply, not silence
            return {"ok": False, "error": f"the lab could not run {name!r}: "
                    f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "result": result}


def refusal(check: PeerCheck) -> str:
    """The error a refused control client gets: who it is, and whose lab this is."""
    if check.verdict == "other-user":
        return f"refused: this lab belongs to another user ({check.summary})"
    return f"refused: the lab could not tell who connected ({check.summary})"


def call(state_dir: str | Path, command: str, timeout: float = 30, **args: Any) -> Any:
    """Run ``command`` on the lab running in ``state_dir`` and return its result."""
    runtime = read_runtime(state_dir)
    request = {"token": runtime["control"]["token"], "command": command, "args": args}
    try:
        with socket.create_connection(("127.0.0.1", runtime["control"]["port"]), timeout) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise LabNotRunning(
            f"the lab in {state_dir} does not answer (it may have stopped): {exc}"
        ) from exc
    try:
        reply = json.loads(data)
    except ValueError as exc:
        raise LabError(f"the lab in {state_dir} sent an unreadable reply") from exc
    if not reply.get("ok"):
        raise LabError(reply.get("error", "the command failed"))
    return reply.get("result")
