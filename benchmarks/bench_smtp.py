"""SMTP throughput on loopback: the lab's MX role against a bare aiosmtpd sink.

    python benchmarks/bench_smtp.py            # print the table
    python benchmarks/bench_smtp.py --quick    # fewer messages per measurement

For 1, 10 and 50 concurrent clients, plain and with STARTTLS, it measures messages per
second delivered to the lab's MX role (``python -m labsupport serve``: faults checked,
Received header, every message stored durably in a Maildir before the 250) and to a bare
aiosmtpd server whose handler keeps nothing, in the same run, and prints the ratio. Each
server runs in its own process; the clients are asyncio connections in this process, each
sending its share of the messages on one connection (EHLO, STARTTLS and EHLO again when
asked, then MAIL, RCPT, DATA per message). Every measurement is bounded in messages and
in time; the lab's mailbox is counted at the end, so a lost message fails the run.

``main()`` returns the figures as Markdown rows (``| measure | result |``), for
``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (1, 10, 50)
#: Messages per measurement, and the seconds after which a measurement stops early.
MESSAGES, QUICK_MESSAGES = 1000, 150
TIME_LIMIT, QUICK_TIME_LIMIT = 15.0, 5.0
MESSAGE = (b"From: bob@northwind.test\r\nTo: carol@campus.test\r\nSubject: benchmark\r\n"
           b"Message-ID: <bench@northwind.test>\r\n\r\n" + b"A line of a benchmark message.\r\n"
           * 40)


@dataclass(frozen=True)
class Cell:
    """One measurement: who, how many clients, TLS or not, messages and seconds."""

    server: str
    clients: int
    tls: bool
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


# -- the bare sink (run as a subprocess: bench_smtp.py --sink) ---------------------------


def run_sink() -> int:
    """A bare aiosmtpd server with STARTTLS whose handler keeps nothing."""
    from aiosmtpd.smtp import SMTP

    sys.path.insert(0, str(ROOT))
    from labsupport.wire.tls import LabCA

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    directory = Path(tempfile.mkdtemp(prefix="mail-labs-sink-"))
    ca = LabCA.load_or_create(directory, ["sink.lab.test"])
    loop = asyncio.new_event_loop()
    context = ca.server_context()

    async def start() -> int:
        server = await loop.create_server(
            lambda: SMTP(Sink(), hostname="sink.lab.test", tls_context=context, loop=loop),
            "127.0.0.1", 0)
        return int(server.sockets[0].getsockname()[1])

    port = loop.run_until_complete(start())
    try:
        loop.add_signal_handler(signal.SIGTERM, loop.stop)
    except NotImplementedError:  # Windows: terminate() ends the process anyway
        pass
    print(json.dumps({"port": port, "ca_file": str(ca.ca_file)}), flush=True)
    loop.run_forever()
    return 0


# -- the clients -------------------------------------------------------------------------


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> bytes:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            if line[3:4] != b"-":
                return line

    async def command(self, line: bytes, expect: bytes) -> None:
        self.writer.write(line + b"\r\n")
        reply = await self.reply()
        if not reply.startswith(expect):
            raise RuntimeError(f"{line!r} got {reply!r}")


async def _one_client(port: int, context: ssl.SSLContext | None, count: int,
                      deadline: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = _Client(reader, writer)
    sent = 0
    try:
        await client.reply()
        await client.command(b"EHLO bench.example", b"250")
        if context is not None:
            await client.command(b"STARTTLS", b"220")
            await writer.start_tls(context, server_hostname="127.0.0.1")
            await client.command(b"EHLO bench.example", b"250")
        while sent < count and time.perf_counter() < deadline:
            await client.command(b"MAIL FROM:<bob@northwind.test>", b"250")
            await client.command(b"RCPT TO:<carol@campus.test>", b"250")
            await client.command(b"DATA", b"354")
            await client.command(MESSAGE + b".", b"250")
            sent += 1
        await client.command(b"QUIT", b"221")
    finally:
        writer.close()
    return sent


async def _measure(port: int, context: ssl.SSLContext | None, clients: int, messages: int,
                   time_limit: float) -> tuple[int, float]:
    share = max(messages // clients, 1)
    started = time.perf_counter()
    sent = await asyncio.gather(*(_one_client(port, context, share, started + time_limit)
                                  for _ in range(clients)))
    return sum(sent), time.perf_counter() - started


def measure_server(name: str, port: int, ca_file: str, *, messages: int,
                   time_limit: float) -> list[Cell]:
    context = ssl.create_default_context(cafile=ca_file)
    cells = []
    for tls in (False, True):
        for clients in CLIENTS:
            sent, seconds = asyncio.run(_measure(port, context if tls else None, clients,
                                                 messages, time_limit))
            cells.append(Cell(name, clients, tls, sent, seconds))
    return cells


# -- the servers -------------------------------------------------------------------------


def _start(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"{' '.join(argv)} printed nothing")
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(20)


def measure(quick: bool = False) -> list[Cell]:
    """Every measurement, lab first, then the sink."""
    messages = QUICK_MESSAGES if quick else MESSAGES
    time_limit = QUICK_TIME_LIMIT if quick else TIME_LIMIT
    home = Path(tempfile.mkdtemp(prefix="mail-labs-bench-smtp-"))
    env = {**os.environ, "MAIL_LABS_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")]
                                         if p)}
    cells: list[Cell] = []
    lab, info = _start([sys.executable, "-m", "labsupport", "serve", "--json", "--quiet",
                        "--state-dir", str(home / "lab")], env)
    try:
        cells += measure_server("lab", info["smtp"]["mx"]["port"], info["ca_file"],
                                messages=messages, time_limit=time_limit)
    finally:
        _stop(lab)
    sys.path.insert(0, str(ROOT))
    from labsupport.mail.mailstore import MailStore

    stored = MailStore(home / "lab" / "mail").count("carol@campus.test")
    sent = sum(c.messages for c in cells)
    if stored != sent:
        raise RuntimeError(f"the lab acknowledged {sent} messages but stored {stored}")
    sink, sink_info = _start([sys.executable, __file__, "--sink"], env)
    try:
        cells += measure_server("sink", sink_info["port"], sink_info["ca_file"],
                                messages=messages, time_limit=time_limit)
    finally:
        _stop(sink)
    return cells


# -- reporting ---------------------------------------------------------------------------


def _pairs(cells: list[Cell]) -> list[tuple[Cell, Cell]]:
    lab = {(c.clients, c.tls): c for c in cells if c.server == "lab"}
    sink = {(c.clients, c.tls): c for c in cells if c.server == "sink"}
    return [(lab[key], sink[key]) for key in lab if key in sink]


def table(cells: list[Cell]) -> str:
    """The full table: clients, TLS, both rates and their ratio."""
    lines = ["| clients | TLS | lab MX role, durable Maildir | bare aiosmtpd sink | ratio |",
             "|---:|---|---:|---:|---:|"]
    for lab, sink in _pairs(cells):
        lines.append(f"| {lab.clients} | {'STARTTLS' if lab.tls else 'plain'} | "
                     f"{lab.rate:,.0f} msg/s ({lab.messages} in {lab.seconds:.1f} s) | "
                     f"{sink.rate:,.0f} msg/s | {lab.rate / sink.rate:.2f} |")
    return "\n".join(lines)


def markdown_rows(cells: list[Cell]) -> list[str]:
    """The figures as ``| measure | result |`` rows (benchmarks/run_all.py's table)."""
    return [f"| SMTP to the MX role, {lab.clients} client(s), "
            f"{'STARTTLS' if lab.tls else 'plain'}: lab (durable Maildir) vs bare aiosmtpd | "
            f"{lab.rate:,.0f} vs {sink.rate:,.0f} msg/s (ratio {lab.rate / sink.rate:.2f}) |"
            for lab, sink in _pairs(cells)]


def main(argv: list[str] | None = None, *, show: bool = False) -> list[str]:
    """Measure and return the Markdown rows; with ``show``, print the full table too."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, shorter limits")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        run_sink()
        return []
    cells = measure(quick=args.quick)
    if show:
        machine = (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
        print(table(cells))
        print(f"\n({machine})")
    return markdown_rows(cells)


if __name__ == "__main__":
    main(show=True)
