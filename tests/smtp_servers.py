"""Throwaway aiosmtpd servers for the SMTP client's tests (tests/mail/test_smtp.py) and
the SMTP explorers' (tests/teach/test_smtp_widgets.py), with the messages they send.

Every server here binds 127.0.0.1 on an ephemeral port: aiosmtpd's Controller cannot
bind port 0 as shipped (it connects to ``self.port`` to trigger its factory), so
:class:`PortZeroController` reads the bound port from ``self.server.sockets`` first.
tests/conftest.py loads this module as a plugin (``pytest_plugins``), so its fixtures
are found by name in every test; a test module imports only the other names it uses.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import pytest  # noqa: E402
import trustme  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session  # noqa: E402

from labsupport.mail.smtp import (  # noqa: E402
    Transcript,
)

HOSTNAME = "mx.lab.test"
#: Seconds any reply to a :class:`Raw` connection may take before a test fails.
RAW_TIMEOUT = 10
PASSWORD = "correct horse"
USER = "alice@northwind.test"
MESSAGE = (
    "From: Alice <alice@northwind.test>\n"
    "To: Bob <bob@campus.test>\n"
    "Subject: dots\n"
    "\n"
    "A line.\n"
    ".a line that starts with a dot\n"
    ".\n"
    "..two dots\n"
    "last line\n"
)

# -- throwaway servers --------------------------------------------------------------------


class PortZeroController(Controller):
    """aiosmtpd's Controller bound to port 0: learn the real port before the trigger
    connection that makes aiosmtpd build its protocol object."""

    def __init__(self, handler: Any, *, smtp_class: type[SMTP] = SMTP, **kwargs: Any) -> None:
        self.smtp_class = smtp_class
        super().__init__(handler, hostname="127.0.0.1", port=0, server_hostname=HOSTNAME,
                         **kwargs)

    def factory(self) -> SMTP:
        return self.smtp_class(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class Sink:
    """A handler that keeps what it gets; ``rcpt_replies`` answers chosen recipients
    differently (e.g. 451 greylisting); ``data_reply`` answers the end of data."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued as 1234"
    close_after_data: bool = False
    hang_up_in_data: bool = False
    ehlo_reply: str | None = None
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [self.ehlo_reply] if self.ehlo_reply else responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        for prefix, reply in self.rcpt_replies.items():
            if address.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.hang_up_in_data:  # the message arrived, the reply never leaves
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return self.data_reply
        if self.close_after_data:
            assert server.transport is not None
            asyncio.get_running_loop().call_soon(server.transport.close)
            return self.data_reply
        content = envelope.original_content or b""
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return self.data_reply


class BannerSMTP(SMTP):
    """Answers 554 instead of 220 in the banner (RFC 5321 section 3.1)."""

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("220 ") and \
                not getattr(self, "_bannered", False):
            self._bannered = True
            status = "554 5.3.2 No SMTP service here"
        await super().push(status)


class XClientSMTP(SMTP):
    """Understands XCLIENT the way Postfix does: a new 220 greeting, EHLO again."""

    xclient_args: list[str] = []

    async def smtp_XCLIENT(self, arg: str) -> None:
        type(self).xclient_args.append(arg)
        assert self.session is not None
        self.session.host_name = None
        await self.push(f"220 {HOSTNAME} XCLIENT accepted")


def check_password(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@dataclass
class Running:
    controller: PortZeroController
    handler: Sink

    @property
    def port(self) -> int:
        return self.controller.port


@dataclass
class Certificates:
    ca_file: Path
    wrong_ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("certs")
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", HOSTNAME)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    other.cert_pem.write_to_path(str(directory / "other-ca.pem"))
    return Certificates(directory / "ca.pem", directory / "other-ca.pem", context)


@pytest.fixture(scope="module")
def start_server() -> Iterator[Callable[..., Running]]:
    """Start an aiosmtpd server; every one started is stopped at the end of the module."""
    started: list[PortZeroController] = []

    def start(handler: Sink | None = None, **kwargs: Any) -> Running:
        handler = handler or Sink()
        controller = PortZeroController(handler, **kwargs)
        controller.start()
        started.append(controller)
        return Running(controller, handler)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="module")
def plain(start_server: Callable[..., Running]) -> Running:
    return start_server()


@pytest.fixture(scope="module")
def starttls(start_server: Callable[..., Running], certs: Certificates) -> Running:
    return start_server(tls_context=certs.server_context)


@pytest.fixture(scope="module")
def implicit(start_server: Callable[..., Running], certs: Certificates) -> Running:
    return start_server(ssl_context=certs.server_context)


@pytest.fixture(scope="module")
def authserver(start_server: Callable[..., Running], certs: Certificates) -> Running:
    return start_server(tls_context=certs.server_context, authenticator=check_password)


@pytest.fixture(scope="module")
def legacy(start_server: Callable[..., Running]) -> Running:
    """AUTH offered without TLS: the insecure configuration."""
    return start_server(authenticator=check_password, auth_require_tls=False)


@pytest.fixture(scope="module")
def greylisting(start_server: Callable[..., Running]) -> Running:
    return start_server(Sink(rcpt_replies={
        "bob@": "451 4.7.1 Greylisted, try again later",
        "nobody@": "550 5.1.1 No such user",
    }))


def refused_port() -> int:
    """A port on which nothing listens (bound, read, closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


def one_shot_server(payload: bytes) -> tuple[int, threading.Thread]:
    """A raw server that sends ``payload`` to its first client, then closes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def serve() -> None:
        with sock:
            conn, _ = sock.accept()
            with conn:
                conn.sendall(payload)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock.getsockname()[1], thread


class Raw:
    """A raw SMTP connection (for the lab's roles too): send bytes, read whole replies
    (all their lines), with no client library in between to tidy what is sent."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None,
                 timeout: float = RAW_TIMEOUT) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(sock, server_hostname="127.0.0.1") if context else sock
        self.file = self.sock.makefile("rb")
        self.banner = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return "\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: str | bytes) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF)."""
        try:
            return self.file.readline() == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def texts_of(transcript: Transcript, direction: str) -> list[str]:
    return [line.text for line in transcript.lines if line.direction == direction]


# Modelled on real headers: Postfix at the receiving MX and the submission server, a
# Gmail-style hop with a comment and a "for" clause, a local hop with no "from".
MULTI_HOP = b"""\
Received: by mail.campus.test (Postfix, from userid 1001)
\tid 4Q2b9x0ZqLz9; Tue, 02 Jan 2024 10:00:09 +0000 (UTC)
Received: from mx1.relay.test (mx1.relay.test [IPv6:2001:db8::25])
\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))
\tby mx-a.campus.test (Postfix) with ESMTPS id 4Q2b9w6HkFz8
\tfor <carol@campus.test>; Tue, 02 Jan 2024 10:00:07 +0000 (UTC)
Received: from out.northwind.test (out.northwind.test. [192.0.2.10])
        by mx1.relay.test with ESMTPSA id a1sor123456
        for <carol@campus.test>
        (version=TLS1_3 cipher=TLS_AES_128_GCM_SHA256 bits=128/128);
        Tue, 02 Jan 2024 02:00:05 -0800 (PST)
Received: from [198.51.100.7] (laptop.example [198.51.100.7])
\tby out.northwind.test (Postfix) with ESMTPSA id 1F2E3D4C
\tfor <carol@campus.test>; Tue,  2 Jan 2024 11:00:01 +0100 (CET)
From: Alice <alice@northwind.test>
To: carol@campus.test
Subject: hops

hi
"""
