"""labsupport.mail.delivery: the delivering MTA against real aiosmtpd servers on 127.0.0.1.

Each test starts its own aiosmtpd server (port 0) on a private loop thread; the server
stands for every lab MX host, as the lab's MX role does. The lab world's zones are the
resolver, the faults and the mail store are fakes, and the lab clock stands still.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from labsupport.core.clock import LabClock
from labsupport.core.errors import LabError
from labsupport.dns.zone import ZoneSet
from labsupport.mail.delivery import (
    MAX_QUEUE_LIFETIME,
    RETRY_SCHEDULE,
    STATUS_EXPIRED,
    DeliveryAttempt,
    HostTry,
    Queue,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
MESSAGE = (b"From: Alice Adams <alice@northwind.test>\n"
           b"To: Bob <bob@northwind.test>\n"
           b"Subject: Lunch\n"
           b"Message-ID: <lunch-1@northwind.test>\n"
           b"\n"
           b"Shall we have lunch at noon?\n"
           b".A line that starts with a dot.\n")
WIRE = MESSAGE.replace(b"\n", b"\r\n")  # what the server receives (dot-unstuffed again)


# -- a real SMTP server that stands for every lab MX host ------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    xclient: dict[str, str] | None


@dataclass
class Behaviour:
    """What the test server answers. ``rcpt`` maps an address to replies given to its
    next RCPTs (one each, then accept); ``rcpt_always`` answers every RCPT."""

    xclient: bool = False
    rcpt: dict[str, list[str]] = field(default_factory=dict)
    rcpt_always: str | None = None
    data: list[str] = field(default_factory=list)
    connections: int = 0
    helos: list[str] = field(default_factory=list)
    mail_froms: list[str] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)


class Handler:
    """Accepts, or answers 4xx/5xx as the behaviour says."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.b.helos.append(hostname)
        if self.b.xclient:
            responses.insert(-1, "250-XCLIENT ADDR HELO NAME")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        self.b.mail_froms.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if self.b.rcpt_always:
            return self.b.rcpt_always
        replies = self.b.rcpt.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.b.data:
            return self.b.data.pop(0)
        content = envelope.original_content or b""
        self.b.messages.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos),
                                        content, getattr(server, "xclient", None)))
        return "250 2.0.0 OK: queued"


class LabMX(SMTP):
    """aiosmtpd's SMTP with a minimal XCLIENT (as Postfix has it for testing)."""

    def __init__(self, handler: Handler, behaviour: Behaviour) -> None:
        super().__init__(handler, hostname="mx.lab.test")
        self.behaviour = behaviour
        self.xclient: dict[str, str] | None = None

    def connection_made(self, transport: Any) -> None:
        self.behaviour.connections += 1
        super().connection_made(transport)

    async def smtp_XCLIENT(self, arg: str) -> None:
        if not self.behaviour.xclient:
            await self.push('500 Error: command "XCLIENT" not recognized')
            return
        attrs = dict(part.split("=", 1) for part in (arg or "").split())
        self.xclient = attrs
        # Postfix answers with a new greeting; the client must say EHLO again.
        await self.push("220 mx.lab.test ESMTP (XCLIENT)")


class LoopThread:
    """An asyncio loop in a daemon thread, for servers the tests start."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class MXServer:
    behaviour: Behaviour
    port: int


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.close()


@pytest.fixture
def mx(loop_thread: LoopThread) -> Iterator[MXServer]:
    behaviour = Behaviour()
    handler = Handler(behaviour)

    async def start() -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: LabMX(handler, behaviour), "127.0.0.1", 0)

    server = loop_thread.call(start())
    yield MXServer(behaviour, server.sockets[0].getsockname()[1])

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    loop_thread.call(stop())


# -- fakes ---------------------------------------------------------------------------


class FakeFaults:
    def __init__(self, *down: str) -> None:
        self.down = set(down)

    def is_down(self, hostname: str) -> bool:
        return hostname in self.down


class FakeStore:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, bytes, str]] = []

    def deliver(self, address: str, raw: bytes, folder: str = "INBOX") -> str:
        self.delivered.append((address, raw, folder))
        return f"key-{len(self.delivered)}"


@pytest.fixture
def clock() -> LabClock:
    frozen = LabClock()
    frozen.freeze(at=T0)
    return frozen


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


MakeQueue = Callable[..., Queue]


@pytest.fixture
def make_queue(tmp_path: Path, world: ZoneSet, clock: LabClock, store: FakeStore,
               mx: MXServer) -> MakeQueue:
    def make(**overrides: Any) -> Queue:
        options: dict[str, Any] = {
            "resolver": world, "clock": clock, "store": store, "faults": FakeFaults(),
            "mx_port": lambda: mx.port, "rng": random.Random(1), "timeout": 5.0,
        }
        options.update(overrides)
        return Queue(tmp_path / "queue", **options)

    return make


def submit_lunch(queue: Queue, *rcpts: str, mail_from: str = "alice@northwind.test") -> str:
    item = queue.submit(mail_from, list(rcpts) or ["bob@northwind.test"], MESSAGE,
                        sender_domain="northwind.test")
    return item.id


def rfcs(attempt: DeliveryAttempt) -> set[str]:
    return {step.rfc for step in attempt.trace if step.rfc}


def dsn_parts(raw: bytes) -> tuple[Message, list[Message], list[Message]]:
    """The report, its three parts, and the delivery-status blocks."""
    report = email.message_from_bytes(raw, policy=email.policy.default)
    parts = list(report.iter_parts())  # type: ignore[attr-defined]
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    return report, parts, blocks


# -- delivery --------------------------------------------------------------------------


def test_delivers_to_mx1_of_northwind(make_queue: MakeQueue, mx: MXServer,
                                      store: FakeStore) -> None:
    queue = make_queue()
    item_id = submit_lunch(queue)
    assert [i.id for i in queue.due()] == [item_id]
    [attempt] = queue.run()
    assert attempt.verdict == "delivered" and attempt.host == "mx1.northwind.test"
    assert attempt.delivered == ("bob@northwind.test",) and attempt.failed == ()
    assert attempt.tried == (HostTry("mx1.northwind.test", "delivered",
                                     "250 2.0.0 OK: queued"),)
    [got] = mx.behaviour.messages
    assert got.mail_from == "alice@northwind.test" and got.rcpt_tos == ["bob@northwind.test"]
    assert got.content == WIRE
    assert got.xclient is None  # this server offers no XCLIENT, so none was sent
    assert mx.behaviour.helos == ["out.northwind.test"]
    assert queue.items() == [] and queue.next_attempt_at() is None
    assert store.delivered == []
    assert "RFC 5321 section 5.1" in rfcs(attempt)
    text = str(attempt)
    assert text.startswith(f"Delivery of {item_id} to northwind.test: delivered")
    assert "-> RCPT TO:<bob@northwind.test>" in text and "<- 250 2.0.0 OK: queued" in text
    assert "mx1.northwind.test" in attempt._repr_html_()
    assert queue.history() == [attempt]


def test_xclient_presents_the_senders_outbound_host(make_queue: MakeQueue,
                                                    mx: MXServer) -> None:
    mx.behaviour.xclient = True
    [attempt] = _run_one(make_queue())
    assert attempt.verdict == "delivered"
    [got] = mx.behaviour.messages
    assert got.xclient == {"ADDR": "192.0.2.10", "HELO": "out.northwind.test"}
    # EHLO, XCLIENT, then EHLO again as Postfix requires.
    assert mx.behaviour.helos == ["out.northwind.test", "out.northwind.test"]
    assert "-> XCLIENT ADDR=192.0.2.10 HELO=out.northwind.test" in str(attempt)


def _run_one(queue: Queue) -> list[DeliveryAttempt]:
    submit_lunch(queue)
    return queue.run()


def test_mx1_down_falls_back_to_mx2(make_queue: MakeQueue, mx: MXServer) -> None:
    queue = make_queue(faults=FakeFaults("mx1.northwind.test"))
    [attempt] = _run_one(queue)
    assert attempt.verdict == "delivered" and attempt.host == "mx2.northwind.test"
    assert [(t.host, t.outcome) for t in attempt.tried] == [
        ("mx1.northwind.test", "refused"), ("mx2.northwind.test", "delivered")]
    assert mx.behaviour.connections == 1  # nothing connects for a host that is down
    text = str(attempt)
    assert "mx1.northwind.test is down (a lesson fault): connection refused" in text
    assert "try the next MX host" in text
    assert text.index("mx1.northwind.test is down") < text.index("try mx2.northwind.test")


def test_4xx_moves_on_to_the_next_host(make_queue: MakeQueue, mx: MXServer) -> None:
    mx.behaviour.rcpt["bob@northwind.test"] = ["451 4.7.1 Greylisted, try again later"]
    [attempt] = _run_one(make_queue())
    assert attempt.verdict == "delivered" and attempt.host == "mx2.northwind.test"
    assert attempt.tried[0] == HostTry("mx1.northwind.test", "temporary",
                                       "451 4.7.1 Greylisted, try again later")
    assert mx.behaviour.connections == 2


def test_4xx_everywhere_defers_and_retries_on_the_lab_clock(
        make_queue: MakeQueue, mx: MXServer, clock: LabClock) -> None:
    greylist = "451 4.7.1 Greylisted, try again later"
    mx.behaviour.rcpt["bob@northwind.test"] = [greylist, greylist]
    queue = make_queue()
    item_id = submit_lunch(queue)
    [attempt] = queue.run()
    assert attempt.verdict == "deferred" and attempt.deferred == ("bob@northwind.test",)
    assert [t.outcome for t in attempt.tried] == ["temporary", "temporary"]
    assert attempt.next_attempt_at == T0 + RETRY_SCHEDULE[0] == T0 + 300
    assert "RFC 5321 section 4.5.4.1" in rfcs(attempt)
    assert "try again at 2026-11-28 12:05:00 UTC (in 5 min)" in str(attempt)
    [item] = queue.items()
    assert (item.id, item.attempts, item.last_reply) == (item_id, 1, greylist)
    assert item.next_attempt_at == queue.next_attempt_at() == T0 + 300
    assert item_id in str(queue.describe()) and greylist in queue.describe()._repr_html_()

    assert queue.run() == [] and queue.due(T0 + 299) == []  # not due yet
    clock.advance(300)
    assert [i.id for i in queue.due()] == [item_id]
    [retry] = queue.run()
    assert retry.verdict == "delivered" and retry.host == "mx1.northwind.test"
    assert queue.items() == [] and len(mx.behaviour.messages) == 1


def test_4xx_at_data_is_temporary(make_queue: MakeQueue, mx: MXServer) -> None:
    mx.behaviour.data = ["451 4.3.0 Try again"]
    [attempt] = _run_one(make_queue())
    assert attempt.verdict == "delivered" and attempt.host == "mx2.northwind.test"
    assert attempt.tried[0] == HostTry("mx1.northwind.test", "temporary", "451 4.3.0 Try again")


@pytest.fixture
def greeting(loop_thread: LoopThread) -> Iterator[Callable[[str], int]]:
    """A listener that greets with a given reply and then only answers QUIT (the way a
    server refusing service behaves, RFC 5321 section 3.1); returns its port."""
    servers: list[asyncio.AbstractServer] = []

    def start(banner: str) -> int:
        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(banner.encode() + b"\r\n")
            while line := await reader.readline():
                if line.strip().upper() == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                writer.write(b"503 5.5.1 Only QUIT now\r\n")
            await writer.drain()
            writer.close()

        async def open_server() -> asyncio.AbstractServer:
            return await asyncio.start_server(session, "127.0.0.1", 0)

        server = loop_thread.call(open_server())
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start

    async def close_all() -> None:
        for server in servers:
            server.close()
            await server.wait_closed()

    loop_thread.call(close_all())


def test_4xx_greeting_defers(make_queue: MakeQueue, greeting: Callable[[str], int]) -> None:
    port = greeting("421 4.3.2 Service not available, closing channel")
    [attempt] = _run_one(make_queue(mx_port=lambda: port))
    assert attempt.verdict == "deferred"
    assert [(t.host, t.outcome) for t in attempt.tried] == [
        ("mx1.northwind.test", "temporary"), ("mx2.northwind.test", "temporary")]


def test_5xx_greeting_is_skipped_then_final(make_queue: MakeQueue, store: FakeStore,
                                            greeting: Callable[[str], int]) -> None:
    port = greeting("554 5.7.1 No SMTP service here")
    [attempt] = _run_one(make_queue(mx_port=lambda: port))
    # Like Postfix, a 5xx greeting sends the client on to the next host; when no host
    # does better, it is final.
    assert [(t.host, t.outcome) for t in attempt.tried] == [
        ("mx1.northwind.test", "permanent"), ("mx2.northwind.test", "permanent")]
    assert attempt.verdict == "bounced"
    assert attempt.failed == (("bob@northwind.test", "554 5.7.1 No SMTP service here"),)
    _, _, blocks = dsn_parts(store.delivered[0][1])
    assert blocks[1]["Status"] == "5.7.1" and blocks[1]["Remote-MTA"] == "dns; mx2.northwind.test"


def test_nothing_listening_defers(make_queue: MakeQueue) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [attempt] = _run_one(make_queue(mx_port=lambda: port))
    assert attempt.verdict == "deferred"
    assert [t.outcome for t in attempt.tried] == ["refused", "refused"]
    assert "cannot connect" in str(attempt)


def test_5xx_bounces_with_a_well_formed_dsn(make_queue: MakeQueue, mx: MXServer,
                                            store: FakeStore) -> None:
    mx.behaviour.rcpt["bob@northwind.test"] = ["550 5.1.1 <bob@northwind.test>: no such user"]
    queue = make_queue()
    item_id = submit_lunch(queue)
    [attempt] = queue.run()
    assert attempt.verdict == "bounced" and attempt.bounce_to == "alice@northwind.test"
    assert attempt.failed == (("bob@northwind.test",
                               "550 5.1.1 <bob@northwind.test>: no such user"),)
    assert [t.host for t in attempt.tried] == ["mx1.northwind.test"]  # 5xx is final
    assert queue.items() == []
    assert "bounce: a delivery status notification" in str(attempt)

    [(address, raw, folder)] = store.delivered
    assert (address, folder) == ("alice@northwind.test", "INBOX")
    report, parts, blocks = dsn_parts(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert "MAILER-DAEMON@out.northwind.test" in str(report["From"])
    assert report["To"] == "alice@northwind.test" and report["Auto-Submitted"] == "auto-replied"
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert "<bob@northwind.test> (host mx1.northwind.test said): 550 5.1.1" in \
        parts[0].get_content()
    per_message, per_recipient = blocks
    assert per_message["Reporting-MTA"] == "dns; out.northwind.test"
    assert per_message["Arrival-Date"]
    assert per_recipient["Final-Recipient"] == "rfc822; bob@northwind.test"
    assert per_recipient["Action"] == "failed" and per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx1.northwind.test"
    assert per_recipient["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <bob@northwind.test>: no such user")
    original = parts[2].get_content()
    assert "Subject: Lunch" in original and "Shall we" not in original
    assert item_id in raw.decode()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_retries_exhausted_bounce(make_queue: MakeQueue, mx: MXServer, clock: LabClock,
                                  store: FakeStore) -> None:
    mx.behaviour.rcpt_always = "451 4.7.1 Greylisted, try again later"
    queue = make_queue()
    submit_lunch(queue)
    waits: list[float] = []
    attempts: list[DeliveryAttempt] = []
    while True:
        [attempt] = queue.run()
        attempts.append(attempt)
        if attempt.verdict != "deferred":
            break
        assert attempt.next_attempt_at is not None
        waits.append(attempt.next_attempt_at - clock.time())
        clock.set(attempt.next_attempt_at)
        assert len(attempts) < 100
    assert waits[:5] == [300, 900, 3600, 14400, 14400]
    assert clock.time() == T0 + MAX_QUEUE_LIFETIME  # the last try is at the limit
    last = attempts[-1]
    assert last.verdict == "bounced" and last.next_attempt_at is None
    assert "give up and return it to the sender" in str(last)
    assert queue.items() == []
    [(_, raw, _)] = store.delivered
    _, _, blocks = dsn_parts(raw)
    assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == STATUS_EXPIRED
    assert blocks[1]["Diagnostic-Code"] == "smtp; 451 4.7.1 Greylisted, try again later"


def test_empty_sender_gets_no_bounce(make_queue: MakeQueue, mx: MXServer,
                                     store: FakeStore) -> None:
    mx.behaviour.rcpt["bob@northwind.test"] = ["550 5.1.1 no such user"]
    queue = make_queue()
    submit_lunch(queue, mail_from="")
    [attempt] = queue.run()
    assert attempt.verdict == "bounced" and attempt.bounce_to is None
    assert mx.behaviour.mail_froms == ["<>"]  # aiosmtpd reports MAIL FROM:<> as "<>"
    assert store.delivered == [] and queue.items() == []
    assert "RFC 5321 section 4.5.5" in rfcs(attempt)


@pytest.mark.parametrize("local", [False, True], ids=["by-dns", "by-local-domains"])
def test_outside_lab_is_never_attempted(make_queue: MakeQueue, mx: MXServer,
                                        store: FakeStore, world: ZoneSet, local: bool) -> None:
    extra = {"local_domains": lambda: set(world.mail_domains())} if local else {}
    queue = make_queue(**extra)
    submit_lunch(queue, "someone@gmail.com")
    [attempt] = queue.run()
    assert attempt.verdict == "bounced" and attempt.tried == ()
    [(rcpt, reply)] = attempt.failed
    assert rcpt == "someone@gmail.com" and reply.startswith("550 5.7.1 gmail.com is outside")
    assert mx.behaviour.connections == 0
    _, _, blocks = dsn_parts(store.delivered[0][1])
    assert blocks[1]["Status"] == "5.7.1" and blocks[1]["Remote-MTA"] is None
    assert blocks[1]["Diagnostic-Code"].startswith("X-Lab; 550 5.7.1")


def test_null_mx_bounces_without_a_connection(make_queue: MakeQueue, mx: MXServer) -> None:
    queue = make_queue()
    submit_lunch(queue, "info@parked.test")
    [attempt] = queue.run()
    assert attempt.verdict == "bounced" and mx.behaviour.connections == 0
    assert attempt.failed[0][1].startswith("556 5.1.10")


def test_dns_failure_defers(make_queue: MakeQueue, zones: ZoneSet, mx: MXServer) -> None:
    zones.fail("northwind.test", "servfail")
    queue = make_queue(resolver=zones)
    submit_lunch(queue)
    [attempt] = queue.run()
    assert attempt.verdict == "deferred" and attempt.reply == "451 4.4.3 Directory server failure"
    assert mx.behaviour.connections == 0 and len(queue.items()) == 1


def test_partly_accepted_recipients(make_queue: MakeQueue, mx: MXServer,
                                    clock: LabClock) -> None:
    mx.behaviour.rcpt["dan@northwind.test"] = ["452 4.2.2 Mailbox full"] * 2
    queue = make_queue()
    submit_lunch(queue, "bob@northwind.test", "dan@northwind.test")
    [attempt] = queue.run()
    assert attempt.verdict == "deferred"
    assert attempt.delivered == ("bob@northwind.test",)
    assert attempt.deferred == ("dan@northwind.test",)
    [item] = queue.items()
    assert dict(item.recipients) == {"northwind.test": ("dan@northwind.test",)}
    clock.advance(300)
    [retry] = queue.run()
    assert retry.verdict == "delivered" and retry.recipients == ("dan@northwind.test",)
    assert [m.rcpt_tos for m in mx.behaviour.messages] == [["bob@northwind.test"],
                                                           ["dan@northwind.test"]]


def test_two_domains_are_handled_separately(make_queue: MakeQueue, mx: MXServer,
                                            store: FakeStore) -> None:
    mx.behaviour.rcpt["carol@campus.test"] = ["550 5.1.1 no such user"]
    queue = make_queue(faults=FakeFaults("mx1.northwind.test"))
    item = queue.submit("alice@northwind.test",
                        ["bob@northwind.test", "carol@campus.test"], MESSAGE,
                        sender_domain="northwind.test")
    assert dict(item.recipients) == {"northwind.test": ("bob@northwind.test",),
                                     "campus.test": ("carol@campus.test",)}
    north, campus = queue.run()
    assert (north.domain, north.verdict, north.host) == (
        "northwind.test", "delivered", "mx2.northwind.test")
    assert (campus.domain, campus.verdict) == ("campus.test", "bounced")
    assert campus.tried[0].host in ("mx-a.campus.test", "mx-b.campus.test")
    assert "mx1.northwind.test" not in str(campus)
    [got] = mx.behaviour.messages
    assert got.rcpt_tos == ["bob@northwind.test"]
    [(_, raw, _)] = store.delivered
    _, _, blocks = dsn_parts(raw)
    assert [b["Final-Recipient"] for b in blocks[1:]] == ["rfc822; carol@campus.test"]


# -- the queue on disk -------------------------------------------------------------------


def test_queue_survives_a_restart(make_queue: MakeQueue, mx: MXServer,
                                  clock: LabClock) -> None:
    mx.behaviour.rcpt["bob@northwind.test"] = ["451 4.7.1 Greylisted"] * 2
    first = make_queue()
    item_id = submit_lunch(first)
    fresh = submit_lunch(first, "carol@campus.test")
    [deferred] = [a for a in first.run() if a.item_id == item_id]
    assert deferred.verdict == "deferred"
    before = first.items()
    assert [i.id for i in before] == [item_id]  # carol's went through

    again = make_queue()
    assert again.items() == before
    [item] = again.items()
    assert (item.attempts, item.next_attempt_at, item.last_reply) == (
        1, T0 + 300, "451 4.7.1 Greylisted")
    clock.advance(300)
    [attempt] = again.run()
    assert attempt.verdict == "delivered" and again.items() == []
    assert mx.behaviour.messages[-1].content == WIRE
    assert fresh != item_id


def test_submitted_item_survives_unrun(make_queue: MakeQueue) -> None:
    first = make_queue()
    item = first.submit("alice@northwind.test", ["bob@northwind.test"], MESSAGE,
                        sender_domain="northwind.test")
    assert make_queue().items() == [item]


class Crash(BaseException):
    """The process dies here (a BaseException: nothing may swallow it)."""


@pytest.mark.parametrize("crash_at", [1, 2], ids=["message", "envelope"])
def test_no_partial_queue_file_after_a_crash(make_queue: MakeQueue, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             crash_at: int) -> None:
    queue = make_queue()
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == crash_at * 2 - 1:  # the data file's fsync (each write also syncs
            raise Crash                     # the directory after its rename)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(Crash):
        submit_lunch(queue)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert sorted(p.name for p in (tmp_path / "queue").iterdir()) == []
    assert queue.items() == [] and make_queue().items() == []


def test_leftovers_of_a_killed_process_are_cleared(make_queue: MakeQueue,
                                                   tmp_path: Path) -> None:
    directory = tmp_path / "queue"
    directory.mkdir()
    (directory / ".ABCDEF0123.json.1a2b3c.tmp").write_text('{"id": "ABCDEF0123", "mail')
    (directory / "0123456789.eml").write_bytes(MESSAGE)  # killed before its envelope
    (directory / "FEDCBA9876.json").write_text("{not json")
    queue = make_queue()
    assert queue.items() == []
    assert sorted(p.name for p in directory.iterdir()) == ["FEDCBA9876.json.broken"]
    assert any("FEDCBA9876.json is unreadable" in e for e in queue.errors())


def test_submit_needs_addresses(make_queue: MakeQueue) -> None:
    queue = make_queue()
    with pytest.raises(LabError, match="'postmaster' is not a mail address"):
        queue.submit("alice@northwind.test", ["postmaster"], MESSAGE,
                     sender_domain="northwind.test")
    with pytest.raises(LabError, match="at least one recipient"):
        queue.submit("alice@northwind.test", [], MESSAGE, sender_domain="northwind.test")
    assert queue.items() == []


def test_clear_empties_the_queue(make_queue: MakeQueue, tmp_path: Path) -> None:
    queue = make_queue()
    submit_lunch(queue)
    queue.clear()
    assert queue.items() == [] and list((tmp_path / "queue").iterdir()) == []
    assert "empty" in str(queue.describe())


# -- threads and loops -------------------------------------------------------------------


def test_run_refuses_the_lab_event_loop(make_queue: MakeQueue) -> None:
    async def on_the_loop() -> None:
        loop = asyncio.get_running_loop()
        queue = make_queue(serving_loop=lambda: loop)
        with pytest.raises(LabError, match="on the lab's event loop"):
            queue.run()
        # The same queue runs fine from another thread.
        assert await loop.run_in_executor(None, queue.run) == []

    asyncio.run(on_the_loop())


def test_worker_delivers_and_follows_the_clock(make_queue: MakeQueue, mx: MXServer,
                                               clock: LabClock) -> None:
    mx.behaviour.rcpt["bob@northwind.test"] = ["451 4.7.1 Greylisted"] * 2
    queue = make_queue()
    queue.start(poll_interval=60)  # only kicks and the clock wake it in this test
    try:
        submit_lunch(queue)
        queue.kick()
        assert queue.wait_idle(10)
        [deferred] = queue.history()
        assert deferred.verdict == "deferred" and len(queue) == 1
        clock.advance(300)  # the clock listener wakes the worker
        assert queue.wait_idle(10)
        assert [a.verdict for a in queue.history()] == ["deferred", "delivered"]
        assert len(queue) == 0 and queue.errors() == []
    finally:
        queue.stop()
