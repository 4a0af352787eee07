"""One DNS question on the wire, and its answer as ``dig`` would print it.

:func:`ask` sends a real query (UDP, or TCP) to a DNS server, by default the lab's, and
returns a :class:`DNSExchange` that shows the response the way ``dig`` does: the header
with its status and flags (``aa`` for an authoritative answer, ``tc`` for a truncated
one), then the question, answer, authority and additional sections. :func:`dig` runs
the real ``dig`` when it is installed, so students see that the two agree.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from ..core.results import Result, TraceBuilder

#: Flags in the order dig prints them.
_FLAG_ORDER = ["QR", "AA", "TC", "RD", "RA", "AD", "CD"]


def flags_text(message: dns.message.Message) -> str:
    """The header flags in lower case, as dig shows them: ``qr aa rd``."""
    names = dns.flags.to_text(message.flags).split()
    return " ".join(f.lower() for f in _FLAG_ORDER if f in names)


@dataclass(frozen=True, kw_only=True)
class DNSExchange(Result):
    """A query and the response it got (or why it got none)."""

    qname: str
    qtype: str
    server: str
    port: int
    transport: str
    response: dns.message.Message | None = None
    elapsed_ms: float = 0.0

    @property
    def rcode(self) -> str:
        return dns.rcode.to_text(self.response.rcode()) if self.response else "no answer"

    @property
    def flags(self) -> list[str]:
        return flags_text(self.response).split() if self.response else []

    @property
    def answers(self) -> list[str]:
        """Each answer record as text (``'northwind.test. 3600 IN MX 10 mx1...'``)."""
        if not self.response:
            return []
        return [line for rrset in self.response.answer for line in rrset.to_text().splitlines()]

    def title(self) -> str:
        return f"{self.qname} {self.qtype} via {self.transport.upper()}: {self.rcode}"

    def dig_text(self) -> str:
        """The response laid out as dig prints it."""
        if self.response is None:
            return f";; {self.summary}"
        r = self.response
        counts = (len(r.question), sum(len(s) for s in r.answer),
                  sum(len(s) for s in r.authority), sum(len(s) for s in r.additional))
        lines = [
            f";; ->>HEADER<<- opcode: QUERY, status: {self.rcode}, id: {r.id}",
            f";; flags: {flags_text(r)}; QUERY: {counts[0]}, ANSWER: {counts[1]}, "
            f"AUTHORITY: {counts[2]}, ADDITIONAL: {counts[3]}",
        ]
        if r.edns >= 0:
            lines += ["", ";; OPT PSEUDOSECTION:", f"; EDNS: version: {r.edns}, "
                      f"flags:; udp: {r.payload}"]
        for title, section in (("QUESTION", r.question), ("ANSWER", r.answer),
                               ("AUTHORITY", r.authority), ("ADDITIONAL", r.additional)):
            if not section:
                continue
            lines += ["", f";; {title} SECTION:"]
            for rrset in section:
                if title == "QUESTION":
                    lines.append(f";{rrset.name}\t\tIN\t{dns.rdatatype.to_text(rrset.rdtype)}")
                else:
                    # Owner, TTL, class, type and data: tab-separated on every line.
                    lines.extend(line.replace(" ", "\t", 4)
                                 for line in rrset.to_text().splitlines())
        lines += ["", f";; Query time: {self.elapsed_ms:.0f} msec",
                  f";; SERVER: {self.server}#{self.port}({self.server}) ({self.transport.upper()})"]
        return "\n".join(lines)

    def text(self) -> str:
        return f"{self.summary}\n\n{self.dig_text()}"

    def _repr_html_(self) -> str:
        return (f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                f"<pre>{html.escape(self.dig_text())}</pre>")


def ask(
    qname: str,
    rdtype: str = "A",
    *,
    server: str = "127.0.0.1",
    port: int = 53,
    tcp: bool = False,
    edns: bool = True,
    timeout: float = 2.0,
) -> DNSExchange:
    """Send one query to ``server``:``port`` and return the exchange.

    ``edns=False`` sends a classic query without EDNS(0), which limits a UDP answer to
    512 octets (RFC 1035 section 4.2.1): large answers then come back truncated.
    """
    trace = TraceBuilder()
    transport = "tcp" if tcp else "udp"
    try:
        query = dns.message.make_query(qname, rdtype, use_edns=0 if edns else False)
    except dns.exception.DNSException as exc:
        return DNSExchange(verdict="invalid", summary=f"cannot ask that: {exc}", qname=qname,
                           qtype=str(rdtype), server=server, port=port, transport=transport)
    qtype = dns.rdatatype.to_text(query.question[0].rdtype)
    trace.add(f"send {qname} {qtype} to {server} port {port} over {transport.upper()}",
              kind="query")
    started = time.perf_counter()
    try:
        if tcp:
            response = dns.query.tcp(query, server, timeout=timeout, port=port)
        else:
            response = dns.query.udp(query, server, timeout=timeout, port=port,
                                     ignore_trailing=True)
    except dns.exception.Timeout:
        trace.add(f"no reply within {timeout} s", kind="error")
        return DNSExchange(verdict="timeout", summary=f"no reply within {timeout} s",
                           qname=qname, qtype=qtype, server=server, port=port,
                           transport=transport, trace=trace.freeze())
    except (OSError, dns.exception.DNSException) as exc:
        trace.add(f"the query failed: {exc}", kind="error")
        return DNSExchange(verdict="error", summary=f"the query failed: {exc}", qname=qname,
                           qtype=qtype, server=server, port=port, transport=transport,
                           trace=trace.freeze())
    elapsed = (time.perf_counter() - started) * 1000
    rcode = dns.rcode.to_text(response.rcode())
    trace.add(f"reply {rcode}, flags {flags_text(response)}", kind="answer")
    return DNSExchange(
        verdict=rcode, summary=_explain(response, qname, qtype), qname=qname, qtype=qtype,
        server=server, port=port, transport=transport, response=response, elapsed_ms=elapsed,
        trace=trace.freeze(),
    )


def _explain(response: dns.message.Message, qname: str, qtype: str) -> str:
    """What the response means, in one sentence."""
    rcode = response.rcode()
    aa = "authoritative " if response.flags & dns.flags.AA else ""
    if response.flags & dns.flags.TC:
        return ("The answer did not fit and came back truncated (tc flag): ask again over "
                "TCP.")
    if rcode == dns.rcode.NXDOMAIN:
        return (f"NXDOMAIN: {qname} does not exist; the SOA in the authority section says "
                "for how long a resolver may remember that.")
    if rcode == dns.rcode.REFUSED:
        return f"REFUSED: this server is not authoritative for {qname} and does not recurse."
    if rcode != dns.rcode.NOERROR:
        return f"{dns.rcode.to_text(rcode)}: the server could not answer."
    count = sum(len(s) for s in response.answer
                if s.rdtype == dns.rdatatype.from_text(qtype) or qtype == "ANY")
    if count == 0:
        return (f"NOERROR with no {qtype} record (NODATA): {qname} exists but has no "
                f"{qtype}; the SOA is in the authority section.")
    return f"An {aa}answer: {count} {qtype} record(s) for {qname}."


def dig_available() -> bool:
    return shutil.which("dig") is not None


def dig(args: str | list[str], timeout: float = 10.0) -> str:
    """Run the real ``dig`` with ``args`` and return what it printed (or why it could not)."""
    exe = shutil.which("dig")
    if exe is None:
        return ("dig is not installed here (Debian/Ubuntu: apt-get install bind9-dnsutils; "
                "macOS: it is built in). The lab's own rendering above shows the same answer.")
    argv = args.split() if isinstance(args, str) else list(args)
    if argv and argv[0] == "dig":
        argv = argv[1:]
    done = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False)
    return done.stdout + done.stderr
