"""Helpers shared by the unit tests: paths, subprocesses, raw DNS over sockets."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import dns.message
import pytest

import labsupport
from labsupport.dns.nameserver import DNSServer
from labsupport.dns.zone import ZoneSet

ROOT = Path(__file__).resolve().parents[1]
ZONES_DIR = ROOT / "data" / "zones"

class SuiteReport(UserWarning):
    """How much of a conformance suite passed (shown in pytest's warnings summary when the
    tests run under xdist, where a test cannot write to the terminal). It lives here, in
    a module every pytest process can import, because xdist sends warnings from the
    workers to the controller by name."""


def load_script(path: Path, name: str) -> ModuleType:
    """Import one of the course's scripts (scripts/*.py, not a package) as ``name``:
    ``name`` differs from the file's so that ``site`` does not shadow the standard
    library's module."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: Seconds a subprocess gets to start, answer or stop before the test fails.
PROCESS_TIMEOUT = 20


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for ``python -m labsupport`` subprocesses: this checkout first on
    the path, ``MAIL_LABS_HOME`` at ``home``, no inherited ``MAIL_LABS_STATE_DIR``."""
    env = {k: v for k, v in os.environ.items() if k != "MAIL_LABS_STATE_DIR"}
    env["MAIL_LABS_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, home: Path, timeout: float = PROCESS_TIMEOUT,
            **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m labsupport ARGS`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "labsupport", *args], cwd=ROOT, env=cli_env(home, **extra),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


# -- a lab's mailboxes -------------------------------------------------------------------


def subjects(lab: labsupport.Lab, address: str = "carol@campus.test") -> list[str]:
    """The subjects of the messages in ``address``'s mailbox of the lab, oldest first."""
    return [m.subject for m in lab.mail.messages(address)]


# -- a lab in a subprocess ---------------------------------------------------------------


@dataclass
class Served:
    """A ``python -m labsupport serve --json`` subprocess and what it printed."""

    proc: subprocess.Popen[str]
    info: dict[str, Any]
    home: Path
    state_dir: Path
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.info["dns"]["port"])


def _pump(stream: Any, sink: list[str], first: queue.Queue[str | None] | None) -> None:
    for line in stream:
        if first is not None:
            first.put(line)
            first = None
        sink.append(line.rstrip("\n"))
    if first is not None:
        first.put(None)


def start_serve(home: Path, state_dir: Path, *extra: str) -> Served:
    """Start ``serve --json`` on ``state_dir`` and wait for its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labsupport", "serve", "--json", "--state-dir", str(state_dir),
         *extra],
        cwd=ROOT, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    first: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []
    errors: list[str] = []
    threading.Thread(target=_pump, args=(proc.stdout, output, first), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, errors, None), daemon=True).start()
    try:
        line = first.get(timeout=PROCESS_TIMEOUT)
    except queue.Empty:
        line = None
    if line is None:
        proc.kill()
        proc.wait(PROCESS_TIMEOUT)
        pytest.fail("serve --json printed nothing; stderr:\n" + "\n".join(errors))
    return Served(proc, json.loads(line), home, state_dir, output, errors)


def stop_serve(served: Served) -> int:
    """SIGTERM, then the exit status (the process must stop promptly)."""
    served.proc.send_signal(signal.SIGTERM)
    try:
        return served.proc.wait(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait(PROCESS_TIMEOUT)
        pytest.fail("serve did not stop within the timeout after SIGTERM")


# -- a DNS server on a private loop ------------------------------------------------------


class ServerThread:
    """A DNSServer on its own asyncio loop in a daemon thread."""

    def __init__(self, zones: ZoneSet, port: int = 0) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = DNSServer(zones, port=port)
        self.call(self.server.start())

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# -- raw DNS over sockets ----------------------------------------------------------------


def udp_send(port: int, wire: bytes, timeout: float = 5.0) -> bytes:
    """Send one datagram to 127.0.0.1:port and return the first reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, ("127.0.0.1", port))
        return sock.recv(65535)


def udp_first_reply(port: int, first: bytes, probe_id: int = 0xBEEF,
                    timeout: float = 5.0) -> bytes:
    """Send ``first``, then a good query with ID ``probe_id`` from the same socket, and
    return the first datagram that comes back: the probe's reply when ``first`` got none
    (the server answers datagrams in order), so silence is seen without waiting."""
    probe = dns.message.make_query("northwind.test", "MX")
    probe.id = probe_id
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(first, ("127.0.0.1", port))
        sock.sendto(probe.to_wire(), ("127.0.0.1", port))
        return sock.recv(65535)


def tcp_exchange(port: int, *wires: bytes, timeout: float = 5.0) -> list[bytes]:
    """Send every message on one TCP connection (length-prefixed), read one reply each."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(len(w).to_bytes(2, "big") + w for w in wires))
        reader = sock.makefile("rb")
        for _ in wires:
            length = int.from_bytes(reader.read(2), "big")
            replies.append(reader.read(length))
    return replies
